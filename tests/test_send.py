"""POST /sms/send: validated, sent once through Telnyx, stored only when accepted."""

import logging

import pytest
from support import API_KEY, FROM_NUMBER

TO = "+13125550147"


def stored_messages(store):
    return store.query("SELECT message_id, status, text FROM messages")


def test_accepted_send_answers_telnyx_status_and_is_stored(client, telnyx, store):
    response = client.post("/sms/send", json={"to": TO, "message": "Table for two?"})

    assert response.status_code == 200
    answer = response.get_json()
    assert answer == {
        "message_id": answer["message_id"],
        "status": "queued",
        "from": FROM_NUMBER,
        "to": TO,
    }
    assert answer["message_id"] in telnyx.messages
    assert stored_messages(store) == [
        (answer["message_id"], "queued", "Table for two?")
    ]
    shown = client.get(f"/messages/{answer['message_id']}").get_json()
    assert shown["status"] == "queued"
    assert shown["direction"] == "outbound"
    assert shown["events"] == []


def test_send_passes_text_sender_and_api_key_to_telnyx(client, telnyx):
    client.post("/sms/send", json={"to": TO, "message": "Süß 👋"})

    assert telnyx.send_requests == [{"from": FROM_NUMBER, "to": TO, "text": "Süß 👋"}]


def test_profile_and_webhook_url_are_passed_when_configured(make_app, telnyx):
    client = make_app(
        TELNYX_MESSAGING_PROFILE_ID="7a1e0c52-93d4-4b8f-a6e2-0f5d3c8b1e94",
        TELNYX_WEBHOOK_URL="http://127.0.0.1:9/webhooks/message",
    ).test_client()

    client.post("/sms/send", json={"to": TO, "message": "Hello"})

    sent = telnyx.send_requests[0]
    assert sent["messaging_profile_id"] == "7a1e0c52-93d4-4b8f-a6e2-0f5d3c8b1e94"
    assert sent["webhook_url"] == "http://127.0.0.1:9/webhooks/message"


@pytest.mark.parametrize(
    ("body", "content_type", "mentions"),
    [
        (b"to=+13125550147", "application/x-www-form-urlencoded", "JSON object"),
        (b"{not json", "application/json", "JSON object"),
        (b"", "application/json", "JSON object"),
        (b'["+13125550147", "hi"]', "application/json", "JSON object"),
        (b'"hi"', "application/json", "JSON object"),
        (b'{"message": "hi"}', "application/json", "'to'"),
        (b'{"to": "+13125550147"}', "application/json", "'message'"),
        (b'{"to": "13125550147", "message": "hi"}', "application/json", "E.164"),
        (b'{"to": "+1 312 555 0147", "message": "hi"}', "application/json", "E.164"),
        (b'{"to": "+0123456", "message": "hi"}', "application/json", "E.164"),
        (b'{"to": "+1234567890123456", "message": "hi"}', "application/json", "E.164"),
        (b'{"to": 13125550147, "message": "hi"}', "application/json", "E.164"),
        (b'{"to": "+13125550147\\n", "message": "hi"}', "application/json", "E.164"),
        (
            b'{"to": "+13125550147", "message": "hi \\ud800"}',
            "application/json",
            "Unicode",
        ),
        (
            b'{"to": "+1", "message": "a", "x": ' + b"[" * 10**5 + b"]" * 10**5 + b"}",
            "application/json",
            "JSON object",
        ),
        (b'{"to": "+13125550147", "message": ""}', "application/json", "non-empty"),
        (
            b'{"to": "+13125550147", "message": "  \\n"}',
            "application/json",
            "'message'",
        ),
        (b'{"to": "+13125550147", "message": 42}', "application/json", "'message'"),
        (b'{"to": "+13125550147", "message": ["hi"]}', "application/json", "'message'"),
        (
            b'{"to": "+13125550147", "message": "hi", "text": "x"}',
            "application/json",
            "text",
        ),
    ],
)
def test_bad_send_request_answers_400_and_calls_nothing(
    client, telnyx, store, body, content_type, mentions
):
    response = client.post("/sms/send", data=body, content_type=content_type)

    assert response.status_code == 400
    assert mentions in response.get_json()["error"]
    assert telnyx.requests == []
    assert stored_messages(store) == []


# Telnyx's failures, chosen by the stand-in from the destination number.


@pytest.mark.parametrize(
    ("to", "status", "code", "mentions"),
    [
        ("+13125550105", 400, "40300", "Blocked due to STOP message"),
        ("+13125550422", 422, "10015", "Invalid value"),
        ("+13125550401", 401, "10009", "TELNYX_API_KEY"),
        ("+13125550429", 429, "10011", "try again later"),
        ("+13125550500", 502, "10007", "not sent"),
    ],
)
def test_telnyx_refusal_keeps_its_code_title_and_detail(
    client, telnyx, store, to, status, code, mentions
):
    response = client.post("/sms/send", json={"to": to, "message": "Hello"})

    assert response.status_code == status
    answer = response.get_json()
    assert mentions in answer["error"]
    assert answer["telnyx_error"]["code"] == code
    assert answer["telnyx_error"]["title"]
    assert answer["telnyx_error"]["detail"]
    assert stored_messages(store) == []


def test_rate_limit_passes_retry_after_on(client, telnyx):
    response = client.post("/sms/send", json={"to": "+13125550429", "message": "Hi"})

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"


def test_wrong_api_key_answers_401_naming_the_setting(make_app, telnyx):
    client = make_app(TELNYX_API_KEY="KEYwrong").test_client()

    response = client.post("/sms/send", json={"to": TO, "message": "Hello"})

    assert response.status_code == 401
    assert "TELNYX_API_KEY" in response.get_json()["error"]
    assert response.get_json()["telnyx_error"]["code"] == "10009"


@pytest.mark.parametrize(
    ("to", "status", "mentions"),
    [
        ("+13125550502", 502, "Telnyx"),
        ("+13125550503", 503, "could not be reached"),
        ("+13125550504", 504, "did not answer in time"),
        ("+13125550505", 504, "did not answer in time"),
    ],
)
def test_broken_or_silent_telnyx_answers_5xx_and_stores_nothing(
    client, telnyx, store, to, status, mentions
):
    response = client.post("/sms/send", json={"to": to, "message": "Hello"})

    assert response.status_code == status
    assert mentions in response.get_json()["error"]
    assert stored_messages(store) == []
    # Sent once, never retried: a retry could deliver the text twice.
    assert len(telnyx.send_requests) == 1


def test_unreachable_telnyx_answers_503(make_app, store):
    closed_port_url = "http://127.0.0.1:9/v2"
    client = make_app(TELNYX_BASE_URL=closed_port_url).test_client()

    response = client.post("/sms/send", json={"to": TO, "message": "Hello"})

    assert response.status_code == 503
    assert "could not be reached" in response.get_json()["error"]
    assert stored_messages(store) == []


def test_send_logs_ids_but_never_the_text_or_the_key(client, telnyx, caplog):
    caplog.set_level(logging.DEBUG)

    response = client.post("/sms/send", json={"to": TO, "message": "secret words"})
    client.post("/sms/send", json={"to": "+13125550105", "message": "more words"})

    message_id = response.get_json()["message_id"]
    logged = caplog.text
    assert f"send accepted: message {message_id}" in logged
    assert "send refused: Telnyx HTTP 400, code 40300" in logged
    assert "secret words" not in logged
    assert "more words" not in logged
    assert API_KEY not in logged


def test_a_proxy_from_the_environment_is_used(make_app, telnyx, monkeypatch):
    # The stand-in doubles as the proxy: it reads the path of an absolute URI.
    proxy = telnyx.base_url.removesuffix("/v2")
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    unreachable = "http://telnyx.invalid/v2"
    client = make_app(TELNYX_BASE_URL=unreachable).test_client()

    response = client.post("/sms/send", json={"to": TO, "message": "Hello"})

    assert response.status_code == 200
    assert len(telnyx.send_requests) == 1
