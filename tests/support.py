"""Helpers the tests share: fixture events and a client that signs webhooks."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from contextlib import closing
from pathlib import Path

import psycopg
import requests

from signature import sign

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
API_KEY = "KEY0123456789ABCDEF_test"
POSTGRES_URL = os.environ.get(
    "TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
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


class Store:
    """Direct access to a test's database, to look at or break what is stored."""

    def __init__(self, url, schema=None):
        self.url = url
        self.kind = "sqlite" if url.startswith("sqlite:") else "postgresql"
        self.schema = schema

    @classmethod
    def new_postgres_schema(cls, server_url):
        """A fresh schema on the server, so that tests never see each other."""
        schema = f"test_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        return cls(f"{server_url}?options=-csearch_path%3D{schema}", schema)

    def query(self, statement):
        """Rows of a statement, as tuples."""
        if self.kind == "sqlite":
            with closing(sqlite3.connect(self.url[len("sqlite:///") :])) as conn:
                rows = conn.execute(statement).fetchall()
                conn.commit()
                return rows
        with psycopg.connect(self.url, autocommit=True) as conn:
            cursor = conn.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def execute(self, statement):
        """Run a statement and commit it."""
        self.query(statement)

    def counts(self):
        """How many messages, events and receipts are stored."""
        return {
            table: self.query(f"SELECT COUNT(*) FROM {table}")[0][0]
            for table in ("messages", "events", "receipts")
        }

    def drop(self):
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {self.schema} CASCADE")


def app_process(folder, *args, **settings):
    """`python app.py` with `args` (such as --sandbox) on a free port in `folder`."""
    port = free_port()
    env = {"PATH": os.environ["PATH"], "PORT": str(port), **settings}
    command = [sys.executable, str(ROOT / "app.py"), *args]
    return ServiceProcess(command, folder, env, folder / f"log-{port}", port)
