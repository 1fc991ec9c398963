"""Every answer that is not a success is JSON {"error": ...} with the right code."""

import logging

import pytest
from support import load_event

BIG = b"x" * (1024 * 1024 + 1)


def test_unknown_route_answers_404_json(client):
    response = client.get("/no/such/page")

    assert response.status_code == 404
    assert response.is_json
    assert response.get_json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("get", "/sms/send", "POST"),
        ("get", "/webhooks/message", "POST"),
        ("delete", "/messages", "GET"),
        ("post", "/messages/some-id", "GET"),
    ],
)
def test_wrong_method_answers_405_json_with_allow(client, method, path, allowed):
    response = getattr(client, method)(path)

    assert response.status_code == 405
    assert response.is_json
    assert response.get_json()["error"]
    assert allowed in response.headers["Allow"]


def test_doubled_slashes_are_not_redirected(client):
    response = client.post("/webhooks//message", headers={"Host": "evil.example"})

    assert response.status_code == 404
    assert response.is_json


def test_options_answers_405_json(client):
    response = client.options("/messages")

    assert response.status_code == 405
    assert response.is_json


@pytest.mark.parametrize("path", ["/sms/send", "/webhooks/message"])
def test_body_over_one_mebibyte_answers_413_json(client, telnyx, path):
    response = client.post(path, data=BIG, content_type="application/json")

    assert response.status_code == 413
    assert response.get_json()["error"]
    assert telnyx.requests == []


def test_unexpected_error_answers_500_without_traceback(app, caplog):
    def explode():
        raise RuntimeError("internal detail that must stay private")

    app.add_url_rule("/explode", view_func=explode)

    response = app.test_client().get("/explode")

    assert response.status_code == 500
    assert response.get_json() == {
        "error": "Internal error; the service logged the details."
    }
    assert "private" not in response.get_data(as_text=True)
    # Logged once, with its traceback, for the operator.
    records = [r for r in caplog.records if r.exc_info]
    assert len(records) == 1
    assert "Traceback" in caplog.text


def test_unreadable_database_answers_503_on_reads(client, store):
    store.execute(
        "DROP TABLE messages CASCADE"
        if store.kind != "sqlite"
        else "DROP TABLE messages"
    )

    response = client.get("/messages")

    assert response.status_code == 503
    assert response.get_json()["error"]


def test_send_that_cannot_be_stored_says_not_to_send_again(
    client, telnyx, store, caplog
):
    caplog.set_level(logging.INFO)
    store.execute("ALTER TABLE messages RENAME TO messages_away")

    response = client.post("/sms/send", json={"to": "+13125550147", "message": "Hello"})

    assert response.status_code == 500
    answer = response.get_json()
    assert "do not send it again" in answer["error"]
    assert answer["message_id"] in telnyx.messages


def test_webhook_refusals_are_json_too(client, webhooks):
    unsigned = client.post("/webhooks/message", json=load_event("message-sent"))
    malformed = webhooks.post(b"{}")

    assert unsigned.status_code == 401
    assert unsigned.get_json()["error"]
    assert malformed.status_code == 400
    assert malformed.get_json()["error"]
