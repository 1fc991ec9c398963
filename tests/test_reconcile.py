"""`flask --app app reconcile`: messages whose final webhook never came."""

import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from support import ROOT

from reconcile import parse_duration

# Telnyx's webhooks go nowhere: this port is closed.
LOST = "http://127.0.0.1:9/webhooks/message"


@pytest.fixture
def lost_webhooks(telnyx, monkeypatch):
    """The stand-in finishes messages at once, and every webhook is lost."""
    monkeypatch.setattr(telnyx, "sent_delay", 0)
    monkeypatch.setattr(telnyx, "final_delay", 0)
    monkeypatch.setattr(telnyx, "retry_delays", ())
    return telnyx


def send_all(make_app, telnyx, numbers):
    client = make_app(TELNYX_WEBHOOK_URL=LOST).test_client()
    sent = [
        client.post("/sms/send", json={"to": to, "message": "Hi"}).get_json()[
            "message_id"
        ]
        for to in numbers
    ]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        records = [telnyx.messages[message_id] for message_id in sent]
        if all(record["completed_at"] for record in records):
            return sent, client
        time.sleep(0.05)
    raise AssertionError("the stand-in never finished the messages")


def reconcile(settings, older_than="0s"):
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "reconcile"]
        + ["--older-than", older_than],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **settings},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_reconcile_applies_what_telnyx_knows(make_app, lost_webhooks, settings):
    sent, client = send_all(
        make_app, lost_webhooks, ["+13125550147", "+13125550101", "+13125550102"]
    )
    assert {client.get(f"/messages/{m}").get_json()["status"] for m in sent} == {
        "queued"
    }

    result = reconcile(settings)

    assert result.returncode == 0, result.stderr
    assert "checked 3, changed 3, unknown to Telnyx 0, failed 0" in result.stdout
    shown = [client.get(f"/messages/{m}").get_json() for m in sent]
    assert [m["status"] for m in shown] == [
        "delivered",
        "delivery_failed",
        "sending_failed",
    ]
    assert [m["delivery_receipt"]["status"] for m in shown] == [
        "delivered",
        "delivery_failed",
        "sending_failed",
    ]
    assert shown[1]["delivery_receipt"]["error"]["code"] == "40008"
    assert shown[0]["events"][-1]["type"] == "reconciliation"


def test_running_it_again_changes_nothing(make_app, lost_webhooks, settings):
    send_all(make_app, lost_webhooks, ["+13125550147"])
    reconcile(settings)

    again = reconcile(settings)

    assert again.returncode == 0, again.stderr
    assert "checked 0, changed 0" in again.stdout


def test_only_messages_older_than_asked_are_checked(make_app, lost_webhooks, settings):
    send_all(make_app, lost_webhooks, ["+13125550147"])

    result = reconcile(settings, "1h")

    assert "checked 0, changed 0" in result.stdout


def test_it_waits_out_telnyx_rate_limits(
    make_app, lost_webhooks, settings, monkeypatch
):
    sent, client = send_all(make_app, lost_webhooks, ["+13125550147"])
    monkeypatch.setattr(lost_webhooks, "rate_limited_retrievals", 2)
    monkeypatch.setattr(lost_webhooks, "retry_after", "1")

    result = reconcile(settings)

    assert result.returncode == 0, result.stderr
    assert "changed 1" in result.stdout
    assert lost_webhooks.rate_limited_retrievals == 0
    assert client.get(f"/messages/{sent[0]}").get_json()["status"] == "delivered"


def test_a_message_telnyx_does_not_know_is_reported(make_app, webhooks, settings):
    from support import load_event, new_id

    webhooks.post(load_event("message-sent", event_id=new_id(), message_id=new_id()))

    result = reconcile(settings)

    assert result.returncode == 0, result.stderr
    assert "checked 1, changed 0, unknown to Telnyx 1" in result.stdout


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_a_bad_duration_is_refused(settings):
    result = reconcile(settings, "soon")

    assert result.returncode == 2
    assert "30m" in result.stderr
