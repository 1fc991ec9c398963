"""Helpers the tests share: fixture events and a client that signs webhooks."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

from signature import sign

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
API_KEY = "KEY0123456789ABCDEF_test"
FROM_NUMBER = "+13125550100"


def load_event(name, event_id=None, message_id=None, status=None, **payload):
    """Return a fixture event, with new ids, a recipient status or payload fields."""
    document = json.loads((FIXTURES / f"{name}.json").read_text())
    data = document["data"]
    if event_id is not None:
        data["id"] = event_id
    if message_id is not None:
        data["payload"]["id"] = message_id
    if status is not None:
        data["payload"]["to"][0]["status"] = status
    data["payload"].update(payload)
    return document


def new_id():
    return str(uuid.uuid4())


class Webhooks:
    """Posts events to the app signed as Telnyx signs them."""

    def __init__(self, client, signing_key):
        self.client = client
        self.signing_key = signing_key

    def post(self, document, timestamp=None, headers=None, key=None):
        body = document
        if not isinstance(body, bytes):
            body = json.dumps(document).encode()
        signed = sign(key or self.signing_key, body, timestamp or int(time.time()))
        signed.update(headers or {})
        return self.client.post(
            "/webhooks/message",
            data=body,
            headers=signed,
            content_type="application/json",
        )


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url, seconds=15):
    deadline = time.monotonic() + seconds
    while True:
        try:
            return requests.get(url, timeout=2)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class ServiceProcess:
    """A real server process on a free loopback port, its output kept in a file."""

    def __init__(self, command, cwd, env, log_path, port):
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed by stop()
        # A session of its own, so that stop() also ends any child it starts.
        self._process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for(f"{self.url}/messages")
        except Exception:
            self.stop()
            raise

    def stop(self, sig=signal.SIGTERM):
        os.killpg(self._process.pid, sig)
        self._process.wait(timeout=20)
        self._log.close()

    def output(self):
        return self.log_path.read_text()


def gunicorn_service(folder, public_key, workers=4, **settings):
    """The app under gunicorn on a free port, its database in `folder`."""
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "TELNYX_API_KEY": API_KEY,
        "TELNYX_PUBLIC_KEY": public_key,
        "TELNYX_PHONE_NUMBER": FROM_NUMBER,
        "DATABASE_URL": f"sqlite:///{folder / 'receipts.db'}",
        **settings,
    }
    command = [sys.executable, "-m", "gunicorn", "--workers", str(workers)]
    command += ["--bind", f"127.0.0.1:{port}", "app:create_app()"]
    return ServiceProcess(command, ROOT, env, folder / "server.log", port)
