"""A full run's log holds ids and outcomes, never numbers, texts, keys or tokens."""

import os
import subprocess
import sys
import time
from pathlib import Path

import requests
from support import app_process

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "log-test-token-3c1e9d0b7a"
TEXTS = ["Gate code is 4471", "Your parcel is at the depot"]
NUMBERS = ["+13125550147", "+13125550101", "+13125550105", "+13125550106"]


def test_a_full_sandbox_run_logs_no_secrets_numbers_or_texts(tmp_path):
    service = app_process(tmp_path, "--sandbox", API_TOKEN=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        ids = []
        for number in NUMBERS:
            for text in TEXTS:
                answer = requests.post(
                    f"{service.url}/sms/send",
                    json={"to": number, "message": text},
                    headers={**auth, "Idempotency-Key": f"k{number[1:]}-{len(text)}"},
                    timeout=10,
                )
                ids += [answer.json()["message_id"]] if answer.ok else []
        requests.post(
            f"{service.url}/sms/send",
            json={"to": NUMBERS[0], "message": TEXTS[0]},
            headers={"Authorization": "Bearer wrong-token-0000000000"},
            timeout=10,
        )
        time.sleep(3)  # the simulator's webhooks arrive
        requests.get(f"{service.url}/messages?status=failed", headers=auth, timeout=10)
        for message_id in ids:
            requests.get(
                f"{service.url}/messages/{message_id}", headers=auth, timeout=10
            )
        trigger = subprocess.run(
            [sys.executable, str(ROOT / "app.py"), "trigger", ids[0]]
            + ["--url", service.url],
            env={"PATH": os.environ["PATH"], "API_TOKEN": TOKEN},
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        service.stop()

    log = service.output()
    assert trigger.returncode == 0, trigger.stderr
    assert "webhook processed" in log
    assert "send accepted" in log
    for secret in [TOKEN, "KEY_SANDBOX", *TEXTS, *NUMBERS, "+12025550100"]:
        assert secret not in log, secret
