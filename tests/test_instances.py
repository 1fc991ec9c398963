"""Several instances on one PostgreSQL database: every guarantee holds across them."""

import json
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from support import gunicorn_service, load_event, new_id

from signature import sign


@pytest.fixture
def shared(postgres_store):
    return postgres_store


@pytest.fixture
def instances(tmp_path, public_key, shared, telnyx):
    """Two servers, each with two workers, on different ports, one database."""
    started = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        started.append(
            gunicorn_service(
                folder,
                public_key,
                workers=2,
                DATABASE_URL=shared.url,
                TELNYX_BASE_URL=telnyx.base_url,
            )
        )
    yield started
    for instance in started:
        instance.stop()


def test_duplicate_and_out_of_order_events_across_instances_apply_once(
    instances, shared, signing_key
):
    finals, deliveries = {}, []
    for index in range(30):
        message_id = new_id()
        fixture, status = [
            ("message-finalized-delivered", "delivered"),
            ("message-finalized-delivery-failed", "delivery_failed"),
            ("message-finalized-sending-failed", "sending_failed"),
        ][index % 3]
        final = load_event(fixture, event_id=new_id(), message_id=message_id)
        sent = load_event("message-sent", event_id=new_id(), message_id=message_id)
        finals[message_id] = status
        deliveries += [final, sent] * 3
    random.Random(11).shuffle(deliveries)

    def deliver(numbered):
        number, event = numbered
        body = json.dumps(event).encode()
        headers = {**sign(signing_key, body), "Content-Type": "application/json"}
        url = instances[number % 2].url  # each copy to either instance
        return requests.post(
            f"{url}/webhooks/message", data=body, headers=headers, timeout=30
        )

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(deliver, enumerate(deliveries)))

    assert {answer.status_code for answer in answers} == {200}
    outcomes = [answer.json()["status"] for answer in answers]
    assert outcomes.count("processed") == 60
    assert dict(shared.query("SELECT message_id, status FROM receipts")) == finals
    assert dict(shared.query("SELECT message_id, status FROM messages")) == finals
    assert shared.query("SELECT COUNT(*) FROM events") == [(60,)]
    # The counts behind /stats, kept by triggers in the racing transactions.
    stats = requests.get(f"{instances[1].url}/stats", timeout=30).json()
    assert stats["by_status"] == dict(Counter(finals.values()))


def test_events_that_beat_the_send_on_another_instance_still_land(
    instances, shared, signing_key, telnyx, monkeypatch
):
    sender, receiver = instances
    # No delay at all: the webhooks race the sender's commit of the send,
    # and they go to the other instance, signed with the key both trust.
    monkeypatch.setattr(telnyx, "signing_key", signing_key)
    monkeypatch.setattr(telnyx, "webhook_url", f"{receiver.url}/webhooks/message")
    monkeypatch.setattr(telnyx, "sent_delay", 0)
    monkeypatch.setattr(telnyx, "final_delay", 0)

    sent = [
        requests.post(
            f"{sender.url}/sms/send", json={"to": to, "message": "Hi"}, timeout=30
        ).json()["message_id"]
        for to in ["+13125550147", "+13125550101", "+13125550102"] * 4
    ]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        receipts = dict(shared.query("SELECT message_id, status FROM receipts"))
        if len(receipts) == len(sent):
            break
        time.sleep(0.2)

    expected = ["delivered", "delivery_failed", "sending_failed"] * 4
    assert [receipts.get(message_id) for message_id in sent] == expected
    statuses = dict(shared.query("SELECT message_id, status FROM messages"))
    assert [statuses[message_id] for message_id in sent] == expected
    texts = dict(shared.query("SELECT message_id, text FROM messages"))
    assert {texts[message_id] for message_id in sent} == {"Hi"}
