"""Property-based attacks on the webhook: whatever arrives, no 5xx, every answer
JSON, nothing stored from a refusal, and nothing unsigned or stale believed."""

import base64
import json
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import load_event

from signature import sign

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=list(HealthCheck)
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=300),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=30,
)

# Places in a real event where a hostile value can be put.
FIELDS = [
    ("data",),
    ("data", "id"),
    ("data", "event_type"),
    ("data", "occurred_at"),
    ("data", "payload"),
    ("data", "payload", "id"),
    ("data", "payload", "to"),
    ("data", "payload", "to", 0),
    ("data", "payload", "to", 0, "status"),
    ("data", "payload", "from"),
    ("data", "payload", "text"),
    ("data", "payload", "parts"),
    ("data", "payload", "cost"),
    ("data", "payload", "errors"),
    ("data", "payload", "sent_at"),
    ("meta",),
]


def assert_json_answer(response):
    assert response.status_code < 500, response.get_data(as_text=True)
    assert response.is_json
    if response.status_code >= 400:
        assert response.get_json()["error"]


@given(body=st.binary(max_size=3000))
@FUZZ
def test_signed_random_bytes_never_break_anything(webhooks, store, body):
    before = list(store.counts().values())

    response = webhooks.post(body)

    assert_json_answer(response)
    if response.status_code != 200:
        assert list(store.counts().values()) == before


@given(field=st.sampled_from(FIELDS), value=json_values, status=st.text(max_size=80))
@FUZZ
def test_signed_events_with_hostile_fields_are_applied_or_refused_whole(
    webhooks, store, field, value, status
):
    event = load_event("message-finalized-delivered", event_id=str(time.time_ns()))
    event["data"]["payload"]["to"][0]["status"] = status
    container = event
    for key in field[:-1]:
        container = container[key]
    container[field[-1]] = value
    before = list(store.counts().values())

    response = webhooks.post(json.dumps(event, allow_nan=True).encode())

    assert_json_answer(response)
    if response.status_code == 400:
        assert list(store.counts().values()) == before


@given(
    timestamp=st.one_of(
        st.text(max_size=30),
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
    ),
    signature=st.one_of(
        st.text(max_size=120),
        st.binary(min_size=64, max_size=64).map(lambda b: base64.b64encode(b).decode()),
    ),
)
@FUZZ
def test_unsigned_or_forged_events_are_never_believed(
    client, store, timestamp, signature
):
    body = json.dumps(load_event("message-finalized-delivered")).encode()
    headers = {"telnyx-timestamp": timestamp, "telnyx-signature-ed25519": signature}

    try:
        response = client.post("/webhooks/message", data=body, headers=headers)
    except ValueError:  # a header value no HTTP client could send
        return

    assert response.status_code == 401
    assert_json_answer(response)
    assert list(store.counts().values()) == [0, 0, 0]


@given(age=st.integers(min_value=301, max_value=10**9), future=st.booleans())
@FUZZ
def test_genuine_signatures_outside_the_window_are_refused(
    client, signing_key, store, age, future
):
    body = json.dumps(load_event("message-finalized-delivered")).encode()
    moment = int(time.time()) + (age if future else -age)

    response = client.post(
        "/webhooks/message", data=body, headers=sign(signing_key, body, moment)
    )

    assert response.status_code == 401
    assert list(store.counts().values()) == [0, 0, 0]


def test_a_captured_event_replayed_within_the_window_changes_nothing(webhooks, store):
    event = load_event("message-finalized-delivery-failed")
    webhooks.post(event)
    before = list(store.counts().values())

    replies = [webhooks.post(event).get_json() for _ in range(3)]

    assert replies == [{"status": "already_processed"}] * 3
    assert list(store.counts().values()) == before
