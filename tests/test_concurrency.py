"""Duplicate and out-of-order deliveries racing through a multi-process server."""

import json
import random
import signal
import sqlite3
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests
from support import gunicorn_service, load_event, new_id

from signature import sign

MESSAGES = 30
COPIES = 4


def test_duplicate_deliveries_across_workers_have_exactly_one_effect(
    gunicorn_server, signing_key
):
    service, database = gunicorn_server
    base_url = service.url
    deliveries, finals = [], {}
    for index in range(MESSAGES):
        message_id = new_id()
        failed = index % 3 == 0
        final = load_event(
            "message-finalized-delivery-failed"
            if failed
            else "message-finalized-delivered",
            event_id=new_id(),
            message_id=message_id,
        )
        sent = load_event("message-sent", event_id=new_id(), message_id=message_id)
        finals[message_id] = "delivery_failed" if failed else "delivered"
        deliveries += [final, sent] * COPIES
    random.Random(7).shuffle(deliveries)

    def deliver(event):
        body = json.dumps(event).encode()
        headers = {**sign(signing_key, body), "Content-Type": "application/json"}
        response = requests.post(
            f"{base_url}/webhooks/message", data=body, headers=headers, timeout=30
        )
        return event["data"]["id"], response.status_code, response.json()["status"]

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(deliver, deliveries))
    assert time.monotonic() - started < 120

    assert {status for _, status, _ in results} == {200}
    processed = [event_id for event_id, _, outcome in results if outcome == "processed"]
    assert len(processed) == len(set(processed)) == MESSAGES * 2
    assert sum(outcome == "already_processed" for *_, outcome in results) == (
        MESSAGES * 2 * (COPIES - 1)
    )

    with sqlite3.connect(database) as conn:
        receipts = dict(conn.execute("SELECT message_id, status FROM receipts"))
        statuses = dict(conn.execute("SELECT message_id, status FROM messages"))
        events = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    assert receipts == finals
    assert statuses == finals
    assert events == MESSAGES * 2
    stats = requests.get(f"{base_url}/stats", timeout=30).json()
    assert stats["by_status"] == dict(Counter(finals.values()))
    assert "locked" not in service.output()


def test_an_acknowledged_webhook_survives_a_killed_server(
    tmp_path, public_key, signing_key
):
    service = gunicorn_service(tmp_path, public_key, workers=2)
    event = load_event("message-finalized-delivery-failed")
    body = json.dumps(event).encode()
    try:
        answer = requests.post(
            f"{service.url}/webhooks/message",
            data=body,
            headers={**sign(signing_key, body), "Content-Type": "application/json"},
            timeout=10,
        )
    finally:
        service.stop(signal.SIGKILL)  # no shutdown, no checkpoint

    assert answer.json() == {"status": "processed"}
    with sqlite3.connect(tmp_path / "receipts.db") as conn:
        receipt = conn.execute("SELECT status, error_code FROM receipts").fetchall()
    assert receipt == [("delivery_failed", "40008")]
