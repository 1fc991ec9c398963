"""`python app.py copy-sqlite`: moving a SQLite history into PostgreSQL."""

import os
import subprocess
import sys

import pytest
from support import (
    API_KEY,
    FROM_NUMBER,
    ROOT,
    Store,
    Webhooks,
    load_event,
    new_id,
)

from app import create_app


@pytest.fixture
def config(public_key):
    return {
        "TELNYX_API_KEY": API_KEY,
        "TELNYX_PUBLIC_KEY": public_key,
        "TELNYX_PHONE_NUMBER": FROM_NUMBER,
    }


@pytest.fixture
def history(tmp_path, config, signing_key):
    """A SQLite file, and a way to add a message to it."""
    path = tmp_path / "old.db"

    def add(final=None):
        app = create_app({**config, "DATABASE_URL": f"sqlite:///{path}"})
        webhooks = Webhooks(app.test_client(), signing_key)
        message_id = new_id()
        webhooks.post(
            load_event("message-sent", event_id=new_id(), message_id=message_id)
        )
        if final:
            webhooks.post(load_event(final, event_id=new_id(), message_id=message_id))
        app.extensions["receipts"].database.close()

    for _ in range(3):
        add("message-finalized-delivery-failed")
    add()
    return path, add


def copy(path, target_url, config):
    return subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "copy-sqlite", str(path)],
        cwd=path.parent,
        env={"PATH": os.environ["PATH"], **config, "DATABASE_URL": target_url},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_copy_brings_every_message_event_and_receipt(history, postgres_store, config):
    path, _ = history
    old = Store(f"sqlite:///{path}")

    result = copy(path, postgres_store.url, config)

    assert result.returncode == 0, result.stderr
    assert "messages: 4 read, 4 copied, 0 already there" in result.stdout
    for statement in (
        "SELECT message_id, status, status_rank, error_code, text FROM messages",
        "SELECT event_id, message_id, event_type, status, occurred_at FROM events",
        "SELECT message_id, event_id, status, error_code, recorded_at FROM receipts",
    ):
        assert sorted(postgres_store.query(statement)) == sorted(old.query(statement))
    newest_first = "SELECT message_id FROM messages ORDER BY seq DESC"
    assert postgres_store.query(newest_first) == old.query(newest_first)


def test_running_the_copy_again_adds_only_what_is_new(history, postgres_store, config):
    path, add = history
    copy(path, postgres_store.url, config)
    add("message-finalized-delivered")

    again = copy(path, postgres_store.url, config)

    assert again.returncode == 0, again.stderr
    assert "messages: 5 read, 1 copied, 4 already there" in again.stdout
    assert postgres_store.counts() == {"messages": 5, "events": 9, "receipts": 4}


def test_copy_refuses_a_sqlite_target(history, config):
    path, _ = history

    result = copy(path, f"sqlite:///{path.parent / 'other.db'}", config)

    assert result.returncode == 2
    assert "PostgreSQL" in result.stderr


def test_a_receipt_waits_for_its_message_and_is_timed_when_both_are_there(
    history, postgres_store, config
):
    # A receipt whose message is not there yet, as a copy of a live database
    # can find it: it waits for a later run, which times it.
    path, _ = history
    old = Store(f"sqlite:///{path}")
    old.execute(
        "INSERT INTO receipts (message_id, event_id, status, occurred_at, recorded_at)"
        " VALUES ('late', 'e-late', 'delivered', '2026-11-02T10:00:04.000Z',"
        " '2026-11-02T10:00:04.000Z')"
    )
    first = copy(path, postgres_store.url, config)
    old.execute(
        "INSERT INTO messages (message_id, status, status_rank, created_at,"
        " updated_at) VALUES ('late', 'delivered', 10, '2026-11-02T10:00:00.000Z',"
        " '2026-11-02T10:00:00.000Z')"
    )
    again = copy(path, postgres_store.url, config)

    assert "receipts: 4 read, 3 copied" in first.stdout
    assert "receipts: 4 read, 1 copied, 3 already there" in again.stdout
    timed = "SELECT tenth, SUM(n) FROM delivery_times WHERE hour = '2026-11-02T10'"
    assert postgres_store.query(f"{timed} GROUP BY tenth") == [(40, 1)]
