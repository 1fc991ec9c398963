"""The database: migrated at start, WAL, and indexed for every list query."""

import sqlite3

import pytest

import db
from app import create_app


def test_starting_twice_on_one_file_migrates_once(settings, database_path):
    create_app(settings)
    create_app(settings)

    with sqlite3.connect(database_path) as conn:
        applied = conn.execute(
            "SELECT migration_id FROM _yoyo_migration ORDER BY migration_id"
        ).fetchall()
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert applied == [("0001.initial-schema",), ("0002.idempotency-keys",)]
    assert journal == "wal"


def test_a_new_database_folder_is_created(settings, tmp_path):
    path = tmp_path / "nested" / "folder" / "r.db"

    create_app({**settings, "DATABASE_URL": f"sqlite:///{path}"})

    assert path.exists()


def query_plans(database, action):
    """Run `action` and return SQLite's plan for each SELECT it made."""
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
