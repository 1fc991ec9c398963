"""`python app.py --sandbox`: the whole delivery loop on one machine, run for real."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from support import app_process

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")

# Destination, then the expected final status, error code and event history.
OUTCOMES = [
    ("+13125550147", "delivered", None, ["sent", "delivered"]),
    ("+13125550101", "delivery_failed", "40008", ["sent", "delivery_failed"]),
    ("+13125550102", "sending_failed", "40001", ["sending_failed"]),
    ("+13125550103", "delivery_unconfirmed", None, ["sent", "delivery_unconfirmed"]),
    ("+13125550104", "expired", "40005", ["sent", "expired"]),
    ("+13125550106", "delivered", None, ["sent", "delivered"]),
]


def start(cwd, *args, env=None):
    return app_process(cwd, *args, **(env or {}))


@pytest.fixture
def sandbox(tmp_path):
    # A `.env` with real-looking credentials must not reach the sandbox.
    (tmp_path / ".env").write_text("TELNYX_API_KEY=KEYreal\nTELNYX_BASE_URL=http://x\n")
    service = start(tmp_path, "--sandbox")
    yield service.url, service, tmp_path
    service.stop()


def send(url, to, text="Your order has shipped"):
    return requests.post(
        f"{url}/sms/send", json={"to": to, "message": text}, timeout=10
    )


def wait_final(url, message_id, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = requests.get(f"{url}/messages/{message_id}", timeout=5).json()
        if message.get("final") and "delivery_receipt" in message:
            return message
        time.sleep(0.2)
    raise AssertionError(f"{message_id} never became final: {message}")


def test_every_destination_reaches_its_documented_outcome(sandbox):
    url, service, _ = sandbox
    sent = {}
    for to, *_ in OUTCOMES:
        response = send(url, to)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "queued"
        sent[to] = response.json()["message_id"]

    for to, status, code, history in OUTCOMES:
        message = wait_final(url, sent[to])
        assert message["status"] == status, to
        receipt = message["delivery_receipt"]
        assert receipt["status"] == status
        assert (receipt["error"] or {}).get("code") == code
        assert (message["error"] or {}).get("code") == code
        time.sleep(0.3)  # the scrambled case keeps posting after its final event
        message = requests.get(f"{url}/messages/{sent[to]}", timeout=5).json()
        assert [event["status"] for event in message["events"]] == history, to
        assert message["status"] == status

    # The scrambled destination really did arrive twice and out of order.
    scrambled = sent["+13125550106"]
    lines = [
        line.split("webhook ", 1)[1]
        for line in service.output().splitlines()
        if scrambled in line and "webhook " in line
    ]
    assert [line.split(":")[0] for line in lines] == [
        "processed",
        "processed",
        "already_processed",
        "already_processed",
    ]
    assert "message.finalized" in lines[0]


def test_opted_out_destination_is_refused_at_send_time(sandbox):
    url, _, _ = sandbox

    response = send(url, "+13125550105")

    assert response.status_code == 400
    assert response.json()["telnyx_error"]["code"] == "40300"
    assert requests.get(f"{url}/messages", timeout=5).json() == []


def test_banner_says_it_is_the_sandbox_and_database_is_its_own(sandbox):
    _, service, cwd = sandbox

    text = service.output()
    assert "SANDBOX MODE" in text
    assert "No SMS leaves it" in text
    assert (cwd / "sandbox.db").exists()
    assert not (cwd / "receipts.db").exists()


def test_sandbox_database_follows_database_url(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'mine.db'}"}
    start(tmp_path, "--sandbox", env=env).stop()

    assert (tmp_path / "mine.db").exists()
    assert not (tmp_path / "sandbox.db").exists()


def trigger(url, *args):
    return subprocess.run(
        [sys.executable, APP, "trigger", *args, "--url", url],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_trigger_sends_a_signed_event_the_service_accepts(sandbox):
    url, _, _ = sandbox
    message_id = "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f"

    result = trigger(
        url,
        message_id,
        "--status",
        "delivery_failed",
        "--error-code",
        "40008",
        "--error-title",
        "Undeliverable",
    )

    assert result.returncode == 0, result.stderr
    assert "answered 200" in result.stdout
    assert "processed" in result.stdout
    message = requests.get(f"{url}/messages/{message_id}", timeout=5).json()
    assert message["status"] == "delivery_failed"
    assert message["delivery_receipt"]["error"]["code"] == "40008"


def test_triggered_late_sent_event_does_not_move_a_final_status_back(sandbox):
    url, _, _ = sandbox
    message_id = send(url, "+13125550147").json()["message_id"]
    wait_final(url, message_id)

    result = trigger(url, message_id, "--event", "message.sent")

    assert result.returncode == 0, result.stderr
    message = requests.get(f"{url}/messages/{message_id}", timeout=5).json()
    assert message["status"] == "delivered"


def test_trigger_refuses_a_service_that_is_not_in_sandbox_mode(tmp_path, public_key):
    env = {
        "TELNYX_API_KEY": "KEYreal",
        "TELNYX_PUBLIC_KEY": public_key,
        "TELNYX_PHONE_NUMBER": "+13125550100",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'real.db'}",
    }
    service = start(tmp_path, env=env)
    try:
        result = trigger(service.url, "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f")
    finally:
        service.stop()

    assert result.returncode == 2
    assert "not in sandbox mode" in result.stderr


def test_trigger_with_the_same_event_id_shows_a_redelivery(sandbox):
    url, _, _ = sandbox
    args = ["6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f", "--event-id", "evt-replayed-1"]

    first = trigger(url, *args)
    again = trigger(url, *args)

    assert "'processed'" in first.stdout
    assert "already_processed" in again.stdout
    assert again.returncode == 0
