"""The OpenAPI description is served, and real answers and fuzzing keep it true."""

import json
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from support import load_event

ROOT = Path(__file__).resolve().parent.parent
SPEC = json.loads((ROOT / "openapi.json").read_text())


def test_description_is_served_as_it_is_in_the_repository(client):
    response = client.get("/openapi.json")

    assert response.status_code == 200
    assert response.get_json() == SPEC


def test_description_needs_no_token_and_covers_every_route(app):
    routes = {
        rule.rule.replace("<message_id>", "{message_id}")
        for rule in app.url_map.iter_rules()
    }

    assert routes == set(SPEC["paths"])


@pytest.fixture
def schema(app):
    return schemathesis.openapi.from_dict(SPEC)


def test_real_answers_match_the_description(client, webhooks, telnyx, schema):
    sent = client.post("/sms/send", json={"to": "+13125550147", "message": "Hi"})
    message_id = sent.get_json()["message_id"]
    event = load_event("message-finalized-delivery-failed", message_id=message_id)
    answers = [
        ("/sms/send", "POST", sent),
        ("/sms/send", "POST", client.post("/sms/send", json={"to": "12"})),
        (
            "/sms/send",
            "POST",
            client.post("/sms/send", json={"to": "+13125550105", "message": "Hi"}),
        ),
        ("/webhooks/message", "POST", webhooks.post(event)),
        ("/webhooks/message", "POST", webhooks.post(event)),
        ("/webhooks/message", "POST", webhooks.post(b"[]")),
        ("/webhooks/message", "POST", client.post("/webhooks/message", data=b"{}")),
        ("/messages/{message_id}", "GET", client.get(f"/messages/{message_id}")),
        ("/messages/{message_id}", "GET", client.get("/messages/unknown")),
        ("/messages", "GET", client.get("/messages?status=failed")),
        ("/messages", "GET", client.get("/messages?status=lost")),
        ("/openapi.json", "GET", client.get("/openapi.json")),
    ]

    for path, method, response in answers:
        schema[path][method].validate_response(response)
    assert answers[7][2].get_json()["delivery_receipt"]["error"]["code"] == "40008"


OPERATIONS = [
    result.ok() for result in schemathesis.openapi.from_dict(SPEC).get_all_operations()
]


# Every operation with valid and with invalid input; those that take no
# input have nothing invalid to be sent.
WITHOUT_INPUT = {"GET /openapi.json", "GET /healthz", "GET /metrics"}
FUZZED = [
    pytest.param(operation, mode, id=f"{operation.label} {mode.value}")
    for operation in OPERATIONS
    for mode in schemathesis.GenerationMode
    if mode.value == "positive" or operation.label not in WITHOUT_INPUT
]


@pytest.mark.parametrize(("operation", "mode"), FUZZED)
def test_fuzzed_requests_get_documented_json_answers_and_never_5xx(
    operation, mode, app, telnyx
):
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case):
        response = case.call(app=app)

        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            assert response.headers["content-type"] == ["application/json"]
            assert json.loads(response.content)["error"]
        if mode is schemathesis.GenerationMode.POSITIVE:
            case.validate_response(response)

    check()
