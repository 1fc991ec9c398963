"""POST /webhooks/message: signed status events, applied once, never backwards."""

import json
import logging
import time

import pytest
from nacl.signing import SigningKey
from support import load_event, new_id

from signature import sign

SENT = "message-sent"
DELIVERED = "message-finalized-delivered"
DELIVERY_FAILED = "message-finalized-delivery-failed"
SENDING_FAILED = "message-finalized-sending-failed"
UNCONFIRMED = "message-finalized-unconfirmed"


def show(client, message_id):
    response = client.get(f"/messages/{message_id}")
    assert response.status_code == 200
    return response.get_json()


@pytest.mark.parametrize(
    ("fixture", "status", "error_code", "error_title"),
    [
        (DELIVERED, "delivered", None, None),
        (DELIVERY_FAILED, "delivery_failed", "40008", "Undeliverable"),
        (SENDING_FAILED, "sending_failed", "40001", "Not routable"),
        (UNCONFIRMED, "delivery_unconfirmed", None, None),
    ],
)
def test_finalized_event_records_status_and_receipt(
    client, webhooks, fixture, status, error_code, error_title
):
    event = load_event(fixture)
    message_id = event["data"]["payload"]["id"]

    response = webhooks.post(event)

    assert response.status_code == 200
    assert response.get_json() == {"status": "processed"}
    message = show(client, message_id)
    assert message["status"] == status
    assert message["final"] is True
    receipt = message["delivery_receipt"]
    assert receipt["status"] == status
    assert receipt["event_id"] == event["data"]["id"]
    if error_code is None:
        assert receipt["error"] is None
        assert message["error"] is None
    else:
        assert receipt["error"]["code"] == error_code
        assert receipt["error"]["title"] == error_title
        assert receipt["error"]["detail"]
        assert message["error"] == receipt["error"]


def test_event_for_unknown_message_creates_it_from_the_payload(client, webhooks):
    webhooks.post(load_event(DELIVERY_FAILED))

    message = show(client, "2d8e4a71-c6f3-4b19-8e2a-0d7c5b9f3e16")
    assert message["to"] == "+13125550163"
    assert message["from"] == "+13125550100"
    assert message["text"] == "Practice moved to 6:30 tonight"
    assert message["encoding"] == "GSM-7"
    assert message["parts"] == 1
    assert message["cost"] == {"amount": "0.0040", "currency": "USD"}
    assert message["completed_at"] == "2026-09-14T16:08:37.052Z"


def test_sent_then_finalized_keeps_the_whole_history(client, webhooks):
    assert webhooks.post(load_event(SENT)).get_json() == {"status": "processed"}
    message_id = load_event(SENT)["data"]["payload"]["id"]
    assert show(client, message_id)["status"] == "sent"
    assert "delivery_receipt" not in show(client, message_id)

    webhooks.post(load_event(DELIVERED))

    message = show(client, message_id)
    assert message["status"] == "delivered"
    assert [(e["type"], e["status"]) for e in message["events"]] == [
        ("message.sent", "sent"),
        ("message.finalized", "delivered"),
    ]
    assert message["events"][0]["occurred_at"] == "2026-09-14T16:02:11.730Z"


def test_redelivered_event_is_acknowledged_and_changes_nothing(client, webhooks, store):
    event = load_event(DELIVERY_FAILED)
    webhooks.post(event)
    before = show(client, event["data"]["payload"]["id"])
    counts = store.counts()

    event["meta"]["attempt"] = 3
    response = webhooks.post(event)

    assert response.status_code == 200
    assert response.get_json() == {"status": "already_processed"}
    assert store.counts() == counts
    assert show(client, event["data"]["payload"]["id"]) == before


def test_late_sent_event_never_overwrites_a_final_status(client, webhooks):
    webhooks.post(load_event(DELIVERED))
    message_id = load_event(DELIVERED)["data"]["payload"]["id"]

    response = webhooks.post(load_event(SENT))

    assert response.get_json() == {"status": "processed"}
    message = show(client, message_id)
    assert message["status"] == "delivered"
    assert message["delivery_receipt"]["status"] == "delivered"
    # The late event still belongs to the history.
    assert len(message["events"]) == 2


def test_second_final_event_does_not_replace_the_first_receipt(client, webhooks):
    first = load_event(DELIVERY_FAILED)
    message_id = first["data"]["payload"]["id"]
    webhooks.post(first)

    other = load_event(DELIVERED, event_id=new_id(), message_id=message_id)
    assert webhooks.post(other).get_json() == {"status": "processed"}

    message = show(client, message_id)
    assert message["status"] == "delivery_failed"
    assert message["delivery_receipt"]["event_id"] == first["data"]["id"]
    assert message["error"]["code"] == "40008"


def test_event_without_errors_never_wipes_a_stored_error(client, webhooks):
    message_id = new_id()
    failing_sent = load_event(
        SENT,
        event_id=new_id(),
        message_id=message_id,
        errors=[{"code": "40006", "title": "Recipient server unavailable"}],
    )
    webhooks.post(failing_sent)

    webhooks.post(load_event(UNCONFIRMED, event_id=new_id(), message_id=message_id))

    message = show(client, message_id)
    assert message["status"] == "delivery_unconfirmed"
    assert message["error"]["code"] == "40006"


def test_unknown_final_status_is_stored_as_given(client, webhooks):
    event = load_event(DELIVERED, event_id=new_id(), message_id=new_id())
    event["data"]["payload"]["to"][0]["status"] = "carrier_rejected"

    response = webhooks.post(event)

    assert response.status_code == 200
    message = show(client, event["data"]["payload"]["id"])
    assert message["status"] == "carrier_rejected"
    assert message["final"] is True
    assert message["delivery_receipt"]["status"] == "carrier_rejected"


def test_numeric_error_code_is_kept_as_text(client, webhooks):
    event = load_event(
        DELIVERY_FAILED,
        event_id=new_id(),
        message_id=new_id(),
        errors=[{"code": 40012, "title": "Invalid destination number"}],
    )
    webhooks.post(event)

    receipt = show(client, event["data"]["payload"]["id"])["delivery_receipt"]
    assert receipt["error"] == {
        "code": "40012",
        "title": "Invalid destination number",
        "detail": None,
    }


def test_inbound_message_event_is_ignored(client, webhooks, store):
    response = webhooks.post(load_event("message-received"))

    assert response.status_code == 200
    assert response.get_json() == {"status": "ignored"}
    assert store.counts() == {"messages": 0, "events": 0, "receipts": 0}


def test_send_committed_after_its_webhook_merges_without_moving_back(
    client, webhooks, telnyx
):
    # The stand-in gives out random ids, so the webhook is written for the id the
    # send is given; the row it creates must survive the send's later commit.
    response = client.post("/sms/send", json={"to": "+13125550147", "message": "Hi"})
    message_id = response.get_json()["message_id"]
    webhooks.post(load_event(DELIVERED, event_id=new_id(), message_id=message_id))

    message = show(client, message_id)
    assert message["status"] == "delivered"
    assert message["text"] == "Hi"


# Signatures: everything below is refused with 401 and stores nothing.


def test_tampered_body_is_rejected(client, webhooks, signing_key, store):
    body = json.dumps(load_event(DELIVERED)).encode()
    headers = webhooks_headers(signing_key, body)

    response = client.post(
        "/webhooks/message",
        data=body.replace(b"delivered", b"delivery_failed"),
        headers=headers,
        content_type="application/json",
    )

    assert response.status_code == 401
    assert "signature" in response.get_json()["error"].lower()
    assert store.counts()["events"] == 0


def test_reserialised_body_is_rejected(client, signing_key):
    # Signed as sent with spaces; checked against a compacted copy of the JSON.
    event = load_event(DELIVERED)
    sent_body = json.dumps(event, indent=2).encode()
    headers = webhooks_headers(signing_key, sent_body)

    response = client.post(
        "/webhooks/message",
        data=json.dumps(event, separators=(",", ":")).encode(),
        headers=headers,
        content_type="application/json",
    )

    assert response.status_code == 401


def test_body_signed_by_another_key_is_rejected(webhooks, store):
    response = webhooks.post(load_event(DELIVERED), key=SigningKey.generate())

    assert response.status_code == 401
    assert store.counts()["events"] == 0


@pytest.mark.parametrize("age", [301, -301, 86400, -86400])
def test_timestamp_outside_tolerance_is_rejected_in_both_directions(
    webhooks, store, age
):
    response = webhooks.post(load_event(DELIVERED), timestamp=int(time.time()) - age)

    assert response.status_code == 401
    assert response.get_json()["error"]
    assert store.counts()["events"] == 0


def test_timestamp_inside_tolerance_is_accepted(webhooks):
    response = webhooks.post(load_event(DELIVERED), timestamp=int(time.time()) - 290)

    assert response.status_code == 200


def test_header_names_are_case_insensitive(client, signing_key):
    body = json.dumps(load_event(DELIVERED)).encode()
    headers = {
        name.upper(): value
        for name, value in webhooks_headers(signing_key, body).items()
    }

    response = client.post(
        "/webhooks/message", data=body, headers=headers, content_type="application/json"
    )

    assert response.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"telnyx-signature-ed25519": None},
        {"telnyx-timestamp": None},
        {"telnyx-signature-ed25519": "not base64!"},
        {"telnyx-signature-ed25519": "c2hvcnQ="},
        {"telnyx-timestamp": "yesterday"},
        {"telnyx-timestamp": "-5"},
        {"telnyx-timestamp": "1.5e9"},
        {"telnyx-timestamp": ""},
    ],
)
def test_missing_or_malformed_signature_headers_are_rejected(
    client, signing_key, store, headers
):
    body = json.dumps(load_event(DELIVERED)).encode()
    signed = webhooks_headers(signing_key, body)
    for name, value in headers.items():
        if value is None:
            del signed[name]
        else:
            signed[name] = value

    response = client.post(
        "/webhooks/message", data=body, headers=signed, content_type="application/json"
    )

    assert response.status_code == 401
    assert response.is_json
    assert store.counts()["events"] == 0


def webhooks_headers(signing_key, body):
    return sign(signing_key, body, int(time.time()))


# Signed but malformed: 400, nothing stored.


def _without(path):
    def change(event):
        container = event
        for key in path[:-1]:
            container = container[key]
        del container[path[-1]]
        return event

    return change


def _setting(path, value):
    def change(event):
        container = event
        for key in path[:-1]:
            container = container[key]
        container[path[-1]] = value
        return event

    return change


@pytest.mark.parametrize(
    "change",
    [
        _without(("data",)),
        _without(("data", "id")),
        _without(("data", "event_type")),
        _without(("data", "payload")),
        _without(("data", "occurred_at")),
        _without(("data", "payload", "id")),
        _without(("data", "payload", "to")),
        _without(("data", "payload", "to", 0, "status")),
        _setting(("data", "id"), ""),
        _setting(("data", "id"), 12345),
        _setting(("data", "id"), "x" * 300),
        _setting(("data", "event_type"), ["message.finalized"]),
        _setting(("data", "occurred_at"), "last tuesday"),
        _setting(("data", "payload"), "delivered"),
        _setting(("data", "payload", "to"), []),
        _setting(("data", "payload", "to"), ["+13125550147"]),
        _setting(("data", "payload", "to", 0, "status"), None),
        _setting(("data", "payload", "to", 0, "status"), ""),
        _setting(("data", "payload", "errors"), "40008"),
        _setting(("data", "payload", "errors"), [{"title": "no code"}]),
        _setting(("data", "payload", "parts"), "one"),
        _setting(("data", "payload", "parts"), True),
        _setting(("data", "payload", "cost"), "free"),
        _setting(("data", "payload", "completed_at"), "soon"),
        _setting(("data", "payload", "text"), "\ud800 lone surrogate"),
        _setting(("data", "payload", "parts"), 2**63),
        _setting(("data", "payload", "parts"), -1),
        _setting(("data", "payload", "errors"), [{"code": "\ud800"}]),
        _setting(("data", "payload", "errors"), [{"code": "400\n08"}]),
        _setting(("data", "payload", "cost"), {"amount": float("nan")}),
        _setting(("data", "payload", "to", 0, "status"), " "),
        _setting(("data", "payload", "to", 0, "status"), "delivered\nforged"),
        _setting(("data", "payload", "id"), "id\nwebhook processed: forged"),
        _setting(("data", "event_type"), "message.\x00finalized"),
    ],
)
def test_signed_but_malformed_event_is_refused_and_stores_nothing(
    webhooks, store, change
):
    response = webhooks.post(change(load_event(DELIVERED)))

    assert response.status_code == 400
    assert response.get_json()["error"]
    assert store.counts() == {"messages": 0, "events": 0, "receipts": 0}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'"event"',
        b"null",
        b"\xff\xfe\xfa",
        b"[" * 100000 + b"]" * 100000,
        b'{"data": {"id": 1' + b"0" * 5000 + b"}}",
    ],
)
def test_signed_body_that_is_not_an_event_object_is_refused(webhooks, store, body):
    response = webhooks.post(body)

    assert response.status_code == 400
    assert response.is_json
    assert store.counts()["events"] == 0


def test_storage_failure_answers_503_so_telnyx_retries(webhooks, store, client):
    store.execute("ALTER TABLE receipts RENAME TO receipts_away")

    event = load_event(DELIVERY_FAILED)
    response = webhooks.post(event)

    assert response.status_code == 503
    assert response.get_json()["error"]
    # Nothing half-way: the event and the message rolled back with the receipt.
    assert store.query("SELECT COUNT(*) FROM events") == [(0,)]
    assert store.query("SELECT COUNT(*) FROM messages") == [(0,)]
    store.execute("ALTER TABLE receipts_away RENAME TO receipts")

    # Telnyx's retry of the same event then lands.
    assert webhooks.post(event).get_json() == {"status": "processed"}


def test_each_outcome_is_logged_once_with_ids(webhooks, caplog):
    caplog.set_level(logging.INFO, logger="receipts")
    event = load_event(DELIVERY_FAILED)
    webhooks.post(event)
    webhooks.post(event)
    webhooks.post(load_event("message-received"))
    webhooks.post(event, key=SigningKey.generate())

    lines = [r.getMessage() for r in caplog.records if r.name == "receipts"]
    event_id, message_id = event["data"]["id"], event["data"]["payload"]["id"]
    assert lines == [
        f"webhook processed: event {event_id}, message.finalized, "
        f"message {message_id}, status delivery_failed",
        f"webhook already_processed: event {event_id}, message.finalized, "
        f"message {message_id}, status delivery_failed",
        "webhook ignored: event 8a5e3c1f-0d7b-4b26-9e48-f3c2a1d6b970, "
        "type message.received",
        "webhook rejected: bad_signature",
    ]
    assert "Practice moved" not in caplog.text
    assert "+13125550163" not in caplog.text
