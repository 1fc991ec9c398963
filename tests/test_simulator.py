"""The Telnyx stand-in itself: Telnyx's shapes, encodings and delivery habits."""

import base64
import json
import threading

import pytest
import requests
from flask import Flask, request
from support import API_KEY, FROM_NUMBER
from werkzeug.serving import make_server

from signature import WebhookVerifier
from telnyx_simulator import TelnyxSimulator, encoding_and_parts


@pytest.mark.parametrize(
    ("text", "encoding", "parts"),
    [
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("€" * 80, "GSM-7", 1),  # the euro sign takes two GSM-7 septets
        ("€" * 81, "GSM-7", 2),
        ("é" * 160, "GSM-7", 1),
        ("ł" * 70, "UCS-2", 1),
        ("ł" * 71, "UCS-2", 2),
        ("👍" * 35, "UCS-2", 1),  # an emoji is two UTF-16 units
        ("👍" * 36, "UCS-2", 2),
    ],
)
def test_encoding_and_parts_follow_sms_rules(text, encoding, parts):
    assert encoding_and_parts(text) == (encoding, parts)


class Receiver:
    """A webhook endpoint that fails its first `failures` deliveries."""

    def __init__(self, failures):
        self.failures = failures
        self.deliveries = []
        app = Flask("receiver")
        app.add_url_rule("/hook", view_func=self.receive, methods=["POST"])
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def receive(self):
        self.deliveries.append((dict(request.headers), request.get_data()))
        if len(self.deliveries) <= self.failures:
            return "busy", 500
        return {"status": "processed"}


@pytest.fixture
def receiver():
    receiver = Receiver(failures=1)
    yield receiver
    receiver.server.shutdown()


@pytest.fixture
def quick_simulator(receiver):
    simulator = TelnyxSimulator(
        api_key=API_KEY,
        phone_number=FROM_NUMBER,
        webhook_url=receiver.url,
        sent_delay=0.05,
        final_delay=0.05,
        retry_delays=(0.05, 0.05),
    )
    simulator.base_url = simulator.start()
    yield simulator
    simulator.stop()


def wait_until(condition, seconds=5):
    event = threading.Event()
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        event.wait(0.05)
    raise AssertionError("condition never held")


def test_failed_delivery_is_retried_with_the_next_attempt_number(
    quick_simulator, receiver
):
    response = requests.post(
        f"{quick_simulator.base_url}/messages",
        json={"from": FROM_NUMBER, "to": "+13125550103", "text": "Hi"},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=5,
    )
    message_id = response.json()["data"]["id"]
    wait_until(lambda: len(receiver.deliveries) >= 3)

    bodies = [json.loads(body) for _, body in receiver.deliveries]
    assert [(b["data"]["event_type"], b["meta"]["attempt"]) for b in bodies] == [
        ("message.sent", 1),
        ("message.sent", 2),
        ("message.finalized", 1),
    ]
    # A retry is the same event: same id, so the receiver can deduplicate it.
    assert bodies[0]["data"]["id"] == bodies[1]["data"]["id"]
    assert {b["data"]["payload"]["id"] for b in bodies} == {message_id}
    assert bodies[2]["data"]["payload"]["to"][0]["status"] == "delivery_unconfirmed"


def test_events_are_signed_verifiably_and_carry_real_fields(quick_simulator, receiver):
    quick_simulator.trigger(
        "m-2", "message.finalized", "delivery_failed", ("40008", "Undeliverable")
    )

    verifier = WebhookVerifier([base64.b64decode(quick_simulator.public_key)], 300)
    for headers, body in receiver.deliveries:
        verifier.verify(headers, body)
    event = json.loads(receiver.deliveries[0][1])
    assert event["data"]["record_type"] == "event"
    assert event["meta"] == {"attempt": 1, "delivered_to": receiver.url}
    assert event["data"]["payload"]["errors"][0]["code"] == "40008"


def test_retrieve_answers_the_current_state_of_a_message(quick_simulator, receiver):
    headers = {"Authorization": f"Bearer {API_KEY}"}
    created = requests.post(
        f"{quick_simulator.base_url}/messages",
        json={"from": FROM_NUMBER, "to": "+13125550101", "text": "Hi"},
        headers=headers,
        timeout=5,
    ).json()["data"]

    wait_until(
        lambda: (
            requests.get(
                f"{quick_simulator.base_url}/messages/{created['id']}",
                headers=headers,
                timeout=5,
            ).json()["data"]["to"][0]["status"]
            == "delivery_failed"
        )
    )
    current = requests.get(
        f"{quick_simulator.base_url}/messages/{created['id']}",
        headers=headers,
        timeout=5,
    ).json()["data"]
    assert current["errors"][0]["code"] == "40008"
    assert current["completed_at"].endswith("+00:00")


def test_retrieve_needs_the_api_key_and_a_known_id(quick_simulator):
    url = f"{quick_simulator.base_url}/messages/unknown"

    anonymous = requests.get(url, timeout=5)
    unknown = requests.get(
        url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5
    )

    assert anonymous.status_code == 401
    assert anonymous.json()["errors"][0]["code"] == "10009"
    assert unknown.status_code == 404
