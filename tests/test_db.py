"""The database: migrated at start, WAL, and indexed for every list query."""

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import db

ROOT = Path(__file__).resolve().parent.parent


def every_migration(store):
    folder = ROOT / "migrations" / store.kind
    return sorted((path.stem,) for path in folder.glob("*.sql"))


def test_starting_twice_migrates_once(make_app, store):
    make_app()
    make_app()

    applied = store.query("SELECT migration_id FROM _yoyo_migration")
    assert sorted(applied) == every_migration(store)


def test_concurrent_start_of_several_processes_migrates_once(store, settings):
    script = (
        "import sys; sys.path.insert(0, '.'); from app import create_app; "
        f"create_app({settings!r})"
    )
    starts = [
        subprocess.Popen([sys.executable, "-c", script], cwd=ROOT) for _ in range(4)
    ]

    assert [start.wait(timeout=60) for start in starts] == [0, 0, 0, 0]
    applied = store.query("SELECT migration_id FROM _yoyo_migration")
    assert sorted(applied) == every_migration(store)


def test_sqlite_runs_in_wal_mode(app, store):
    if store.kind != "sqlite":
        pytest.skip("a SQLite setting")

    assert store.query("PRAGMA journal_mode") == [("wal",)]


def test_a_new_database_folder_is_created(make_app, tmp_path):
    path = tmp_path / "nested" / "folder" / "r.db"

    make_app(DATABASE_URL=f"sqlite:///{path}")

    assert path.exists()


def query_plans(database, action):
    """Run `action` and return SQLite's plan for each SELECT it made."""
    if database.kind != "sqlite":
        pytest.skip("SQLite's query plans; PostgreSQL's depend on its statistics")
    statements = []
    # Single-threaded, the pool lends the same connection every time.
    with database.connect() as conn:
        conn.set_trace_callback(statements.append)
    try:
        action()
    finally:
        conn.set_trace_callback(None)
    probe = sqlite3.connect(database.path)
    return [
        " / ".join(row[3] for row in probe.execute(f"EXPLAIN QUERY PLAN {sql}"))
        for sql in statements
        if sql.startswith("SELECT")
    ]


@pytest.mark.parametrize(
    ("statuses", "before", "index"),
    [
        (None, None, None),
        (None, 50, "INTEGER PRIMARY KEY"),
        (("delivered",), None, "messages_status_seq"),
        (("delivered",), 50, "messages_status_seq"),
    ],
)
def test_list_queries_read_in_order_without_sorting(app, statuses, before, index):
    database = app.extensions["receipts"].database

    plans = query_plans(
        database, lambda: db.list_messages(database, statuses, before, 10)
    )

    assert len(plans) == 1
    assert "TEMP B-TREE" not in plans[0]
    if index:
        assert index in plans[0]


def test_filter_on_several_statuses_reads_one_index_range_each(app):
    database = app.extensions["receipts"].database
    statuses = ("sending_failed", "delivery_failed", "expired")

    (plan,) = query_plans(
        database, lambda: db.list_messages(database, statuses, 50, 10)
    )

    # Only the page-sized parts are merged; the table itself is never scanned.
    assert plan.count("USING INDEX messages_status_seq (status=? AND seq<?)") == 3
    assert "SCAN messages" not in plan


@pytest.mark.parametrize(
    ("since", "until", "reads"),
    [
        # Whole hours come from the counts the triggers keep, never the messages.
        ("2026-11-01T00:00", "2026-11-08T00:00", "PRIMARY KEY (hour>? AND hour<?)"),
        # A part of an hour is counted through the creation index.
        (
            "2026-11-01T00:30",
            "2026-11-01T00:45",
            "messages_created (created_at>? AND created_at<?)",
        ),
    ],
)
def test_stats_read_only_their_window(app, since, until, reads):
    database = app.extensions["receipts"].database
    since, until = f"{since}:00.000Z", f"{until}:00.000Z"

    plans = query_plans(
        database,
        lambda: db.delivery_stats(database, since, until, ("delivery_failed",)),
    )

    assert len(plans) == 2
    for plan in plans:
        assert reads in plan
        assert "SCAN" not in plan
