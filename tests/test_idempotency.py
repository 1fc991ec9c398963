"""Idempotency-Key on POST /sms/send: a retry never sends the text twice."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import requests
from support import gunicorn_service

import idempotency
from messaging import iso_utc

BODY = {"to": "+13125550147", "message": "Your table for two is ready"}


def send(client, key, body=BODY):
    return client.post("/sms/send", json=body, headers={"Idempotency-Key": key})


def test_repeat_with_the_same_key_gets_the_first_answer_without_sending(client, telnyx):
    first = send(client, "order-7781:confirmation")
    second = send(client, "order-7781:confirmation")

    assert first.status_code == second.status_code == 200
    assert second.get_json() == first.get_json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert len(telnyx.send_requests) == 1


def test_different_keys_send_twice(client, telnyx):
    send(client, "key-1")
    send(client, "key-2")

    assert len(telnyx.send_requests) == 2


def test_same_key_with_another_body_answers_422(client, telnyx):
    send(client, "key-1")

    response = send(client, "key-1", {**BODY, "message": "Something else"})

    assert response.status_code == 422
    assert "different body" in response.get_json()["error"]
    assert len(telnyx.send_requests) == 1


@pytest.mark.parametrize("key", ["", "a b", "é", "x" * 256, "key/1", "key\t1"])
def test_malformed_key_answers_400_and_sends_nothing(client, telnyx, key):
    response = send(client, key)

    assert response.status_code == 400
    assert "Idempotency-Key" in response.get_json()["error"]
    assert telnyx.requests == []


def test_a_refusal_frees_the_key_for_a_retry(client, telnyx):
    opted_out = {**BODY, "to": "+13125550105"}

    first = send(client, "key-1", opted_out)
    second = send(client, "key-1", opted_out)

    assert first.status_code == second.status_code == 400
    assert "Idempotent-Replayed" not in second.headers
    assert len(telnyx.send_requests) == 2


def test_an_answer_that_may_have_sent_is_kept(client, telnyx):
    silent = {**BODY, "to": "+13125550504"}

    first = send(client, "key-1", silent)
    second = send(client, "key-1", silent)

    assert first.status_code == second.status_code == 504
    assert second.headers["Idempotent-Replayed"] == "true"
    assert len(telnyx.send_requests) == 1


def test_keys_outlive_a_restart(make_app, telnyx):
    first = send(make_app().test_client(), "key-1")
    second = send(make_app().test_client(), "key-1")

    assert second.get_json() == first.get_json()
    assert len(telnyx.send_requests) == 1


def test_a_key_older_than_a_day_is_forgotten(client, telnyx, store):
    send(client, "key-1")
    store.execute("UPDATE idempotency_keys SET created_at = '2020-01-01T00:00:00Z'")

    send(client, "key-1")

    assert len(telnyx.send_requests) == 2


@pytest.fixture
def workers(tmp_path, public_key, telnyx):
    service = gunicorn_service(tmp_path, public_key, TELNYX_BASE_URL=telnyx.base_url)
    yield service
    service.stop()


def test_concurrent_requests_with_one_key_send_once(workers, telnyx):
    def post(_):
        return requests.post(
            f"{workers.url}/sms/send",
            json=BODY,
            headers={"Idempotency-Key": "race-1"},
            timeout=30,
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(post, range(8)))

    assert {answer.status_code for answer in answers} == {200}
    assert len({answer.json()["message_id"] for answer in answers}) == 1
    assert len(telnyx.send_requests) == 1


def test_a_request_stopped_mid_send_keeps_its_key_and_nothing_is_resent(app):
    database = app.extensions["receipts"].database
    calls = []

    def stopped_by_a_signal():
        calls.append("sent")
        raise SystemExit(1)  # how gunicorn stops a worker it times out

    with pytest.raises(SystemExit):
        idempotency.once(database, "key-1", "digest", stopped_by_a_signal, 0.2)
    with pytest.raises(idempotency.KeyConflict) as repeat:
        idempotency.once(database, "key-1", "digest", stopped_by_a_signal, 0.2)

    assert calls == ["sent"]
    assert repeat.value.status == 409


def test_a_key_abandoned_long_ago_is_answered_at_once(app, store):
    database = app.extensions["receipts"].database
    an_hour_ago = iso_utc(datetime.now(UTC) - timedelta(hours=1))
    store.execute(
        "INSERT INTO idempotency_keys (idempotency_key, fingerprint, state,"
        f" created_at) VALUES ('key-1', 'digest', 'pending', '{an_hour_ago}')"
    )

    started = time.monotonic()
    with pytest.raises(idempotency.KeyConflict) as repeat:
        idempotency.once(database, "key-1", "digest", None, wait_seconds=30)

    assert "stopped before answering" in repeat.value.message
    assert time.monotonic() - started < 5


def test_a_send_that_found_no_free_connection_frees_its_key(app, telnyx):
    client = app.test_client()
    release = threading.Event()
    calls = app.extensions["receipts"].telnyx._calls
    for _ in range(calls._max_workers):  # every thread busy past the deadline
        calls.submit(release.wait)

    refused = send(client, "order-9:reminder")
    release.set()
    retried = send(client, "order-9:reminder")

    assert refused.status_code == 503
    assert "not sent" in refused.get_json()["error"]
    # Nothing went, so the key is free: the retry sends, once.
    assert retried.status_code == 200
    assert "Idempotent-Replayed" not in retried.headers
    assert len(telnyx.send_requests) == 1
