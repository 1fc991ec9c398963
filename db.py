"""Storage: every SQL statement of the service, the same on SQLite and PostgreSQL.

Statements use `?` placeholders; the PostgreSQL connection translates them.
Connections, transactions and migrations live in backends.py.
"""

from datetime import datetime, timedelta

from backends import (  # noqa: F401
    DRIVER_ERRORS,
    SQLiteDatabase,
    StorageError,
    open_database,
)
from messaging import FINAL_RANK, FINALIZED, MessageUpdate, iso_utc, utc_now


def record_sent(db, update):
    """Store a message Telnyx accepted, merging into a row a webhook made first."""
    try:
        with db.transaction() as conn:
            _upsert_message(conn, update, utc_now())
    except DRIVER_ERRORS as error:
        raise StorageError(str(error)) from error


def apply_event(db, event_id, event_type, update):
    """Apply one status event exactly once; return False for a redelivery."""
    try:
        with db.transaction() as conn:
            return _apply_event(conn, event_id, event_type, update)
    except DRIVER_ERRORS as error:
        raise StorageError(str(error)) from error


def warm_up(db):
    """Run the webhook's statements once, leaving nothing behind.

    SQLite prepares a statement on its first use in a connection, and the
    first commit after start sets up the write-ahead log; doing both at start
    keeps the first real webhook as fast as the ones after it.
    """
    # A control character: no id that passed the event parser can be equal.
    dummy = "\x1fwarm-up"
    update = MessageUpdate(dummy, "delivered", FINAL_RANK, utc_now())
    with db.transaction() as conn:
        _apply_event(conn, dummy, FINALIZED, update)
        conn.execute("SELECT * FROM messages WHERE message_id = ?", (dummy,))
        for table in ("events", "receipts", "messages"):
            conn.execute(f"DELETE FROM {table} WHERE message_id = ?", (dummy,))


def _apply_event(conn, event_id, event_type, update):
    now = utc_now()
    inserted = conn.execute(
        "INSERT INTO events (event_id, message_id, event_type, status,"
        " occurred_at, received_at) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (event_id) DO NOTHING",
        (
            event_id,
            update.message_id,
            event_type,
            update.status,
            update.occurred_at,
            now,
        ),
    ).rowcount
    if not inserted:
        return False

    _upsert_message(conn, update, now)
    if update.final:
        _insert_receipt(conn, event_id, update, now)
    return True


_KEEP_ERROR = f"(excluded.error_code IS NULL OR messages.status_rank >= {FINAL_RANK})"

# The rank decides: a status only moves forward, the first final status
# stays, and an error is only replaced by another error before the message
# is final. Both sides of a race end in the same row whatever their order.
_UPSERT_MESSAGE = f"""
INSERT INTO messages (
    message_id, direction, from_number, to_number, text, status, status_rank,
    parts, encoding, cost_amount, cost_currency, error_code, error_title,
    error_detail, sent_at, completed_at, created_at, updated_at
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (message_id) DO UPDATE SET
    direction = COALESCE(messages.direction, excluded.direction),
    from_number = COALESCE(messages.from_number, excluded.from_number),
    to_number = COALESCE(messages.to_number, excluded.to_number),
    text = COALESCE(messages.text, excluded.text),
    status = CASE WHEN excluded.status_rank > messages.status_rank
        THEN excluded.status ELSE messages.status END,
    status_rank = CASE WHEN excluded.status_rank > messages.status_rank
        THEN excluded.status_rank ELSE messages.status_rank END,
    parts = COALESCE(excluded.parts, messages.parts),
    encoding = COALESCE(excluded.encoding, messages.encoding),
    cost_amount = COALESCE(excluded.cost_amount, messages.cost_amount),
    cost_currency = COALESCE(excluded.cost_currency, messages.cost_currency),
    error_code = CASE WHEN {_KEEP_ERROR} THEN messages.error_code
        ELSE excluded.error_code END,
    error_title = CASE WHEN {_KEEP_ERROR} THEN messages.error_title
        ELSE excluded.error_title END,
    error_detail = CASE WHEN {_KEEP_ERROR} THEN messages.error_detail
        ELSE excluded.error_detail END,
    sent_at = COALESCE(messages.sent_at, excluded.sent_at),
    completed_at = COALESCE(messages.completed_at, excluded.completed_at),
    updated_at = excluded.updated_at
"""


def _upsert_message(conn, update, now):
    error = update.error
    conn.execute(
        _UPSERT_MESSAGE,
        (
            update.message_id,
            update.direction,
            update.from_number,
            update.to_number,
            update.text,
            update.status,
            update.rank,
            update.parts,
            update.encoding,
            update.cost_amount,
            update.cost_currency,
            error.code if error else None,
            error.title if error else None,
            error.detail if error else None,
            update.sent_at,
            update.completed_at,
            now,
            now,
        ),
    )


def _insert_receipt(conn, event_id, update, now):
    error = update.error
    conn.execute(
        "INSERT INTO receipts (message_id, event_id, status, error_code,"
        " error_title, error_detail, occurred_at, recorded_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING",
        (
            update.message_id,
            event_id,
            update.status,
            error.code if error else None,
            error.title if error else None,
            error.detail if error else None,
            update.occurred_at,
            now,
        ),
    )


def check(db):
    """Raise StorageError unless the database answers a query on its tables."""
    try:
        with db.reading() as conn:
            conn.execute("SELECT 1 FROM messages WHERE 1 = 0").fetchall()
    except DRIVER_ERRORS as error:
        raise StorageError(str(error)) from error


def count_by_status(db):
    """Pairs of a status and how many messages have it."""
    with db.reading() as conn:
        rows = conn.execute(
            "SELECT status, COUNT(*) AS n FROM messages GROUP BY status ORDER BY status"
        ).fetchall()
    return [(row["status"], row["n"]) for row in rows]


def get_message(db, message_id):
    """Return one message with its receipt and event history, or None."""
    with db.reading() as conn:
        row = conn.execute(
            "SELECT * FROM messages WHERE message_id = ?", (message_id,)
        ).fetchone()
        if row is None:
            return None
        receipt = conn.execute(
            "SELECT * FROM receipts WHERE message_id = ?", (message_id,)
        ).fetchone()
        events = conn.execute(
            "SELECT event_id, event_type, status, occurred_at FROM events"
            " WHERE message_id = ? ORDER BY occurred_at, seq",
            (message_id,),
        ).fetchall()
    return dict(row), receipt and dict(receipt), [dict(event) for event in events]


def delivery_stats(db, since, until, failure_statuses):
    """Counts, failures, time to a final status and a daily series, for messages
    created from `since` up to (not including) `until`.

    The whole hours of the window are read from message_counts and
    delivery_times, which triggers keep up to date (migration 0004); the
    partial hours at either end are counted from the messages themselves.
    Durations are counted per tenth of a second, and the percentiles read off
    those counts.
    """
    first_hour, end_hour = _whole_hours(since, until)
    if first_hour < end_hour:
        spans = [(since, first_hour), (end_hour, until)]
    else:
        spans = [(since, until)]

    with db.reading() as conn:
        parts = [_scanned(db, conn, start, end) for start, end in spans if start < end]
        if first_hour < end_hour:
            parts.append(_counted(conn, first_hour[:13], end_hour[:13]))

    by_status, daily, failures, histogram = {}, {}, {}, {}
    for groups, durations in parts:
        for day, status, rank, code, title, n in groups:
            if not n:
                continue  # a key of the counts whose messages all moved on
            # A status name can be final or not: Telnyx's final event decides.
            by_status[status, rank] = by_status.get((status, rank), 0) + n
            counts = daily.setdefault(day, [0, 0, 0])
            counts[0] += n
            if status == "delivered":
                counts[1] += n
            elif status in failure_statuses:
                counts[2] += n
                seen = failures.setdefault(code, [None, 0])
                seen[0] = max(filter(None, (seen[0], title)), default=None)
                seen[1] += n
        for tenth, n in durations:
            histogram[tenth] = histogram.get(tenth, 0) + n

    durations = sorted((tenth / 10, n) for tenth, n in histogram.items() if n)
    measured = sum(n for _, n in durations)
    return {
        "by_status": [(*key, n) for key, n in sorted(by_status.items()) if n],
        "failures": sorted(
            ((code, title, n) for code, (title, n) in failures.items() if n),
            key=lambda failure: (-failure[2], failure[0] is not None, failure[0]),
        ),
        "daily": [(day, *counts) for day, counts in sorted(daily.items()) if counts[0]],
        "measured": measured,
        "p50": _nearest_rank(durations, measured, 50),
        "p95": _nearest_rank(durations, measured, 95),
    }


def _whole_hours(since, until):
    """The first whole hour at or after `since`, and the last at or before `until`."""
    start = since[:13]
    if since[13:] != ":00:00.000Z":
        later = datetime.fromisoformat(start + ":00:00+00:00") + timedelta(hours=1)
        start = iso_utc(later)[:13]
    return start + ":00:00.000Z", until[:13] + ":00:00.000Z"


def _counted(conn, first_hour, end_hour):
    """The figures of whole hours, from the tables the triggers keep."""
    groups = conn.execute(
        "SELECT substr(hour, 1, 10) AS day, status, status_rank, error_code,"
        " error_title, SUM(n) AS n FROM message_counts WHERE hour >= ? AND hour < ?"
        " GROUP BY substr(hour, 1, 10), status, status_rank, error_code, error_title",
        (first_hour, end_hour),
    ).fetchall()
    durations = conn.execute(
        "SELECT tenth, SUM(n) AS n FROM delivery_times"
        " WHERE hour >= ? AND hour < ? GROUP BY tenth",
        (first_hour, end_hour),
    ).fetchall()
    return (
        [
            (
                *_group(row),
                row["error_code"] or None,
                row["error_title"] or None,
                int(row["n"]),
            )
            for row in groups
        ],
        [(int(row["tenth"]), int(row["n"])) for row in durations],
    )


# The counts keep a title to its first 200 characters (migration 0004).
_TITLE = "substr(error_title, 1, 200)"


def _scanned(db, conn, since, until):
    """The same figures for any window, counted from the messages themselves.

    Only the creation index narrows the rows: a condition on the status would
    let SQLite pick the status index and read every failure ever stored. Titles
    are grouped, not compared in SQL, whose order depends on the collation.
    """
    tenths = db.TENTHS_BETWEEN.format(start="m.created_at", end="r.occurred_at")
    groups = conn.execute(
        "SELECT substr(created_at, 1, 10) AS day, status, status_rank, error_code,"
        f" {_TITLE} AS error_title, COUNT(*) AS n FROM messages"
        " WHERE created_at >= ? AND created_at < ? GROUP BY"
        f" substr(created_at, 1, 10), status, status_rank, error_code, {_TITLE}",
        (since, until),
    ).fetchall()
    durations = conn.execute(
        f"SELECT {tenths} AS tenth, COUNT(*) AS n"
        " FROM messages m JOIN receipts r ON r.message_id = m.message_id"
        " WHERE m.created_at >= ? AND m.created_at < ?"
        " AND r.occurred_at >= m.created_at GROUP BY tenth",
        (since, until),
    ).fetchall()
    return (
        [
            (*_group(row), row["error_code"], row["error_title"], row["n"])
            for row in groups
        ],
        [(int(row["tenth"]), row["n"]) for row in durations],
    )


def _group(row):
    return row["day"], row["status"], row["status_rank"]


def _nearest_rank(histogram, total, percent):
    """The smallest value with at least `percent`% of the total at or below it."""
    if not total:
        return None
    rank = max(1, -(-percent * total // 100))
    seen = 0
    for value, count in histogram:
        seen += count
        if seen >= rank:
            return value
    return histogram[-1][0]


def list_messages(db, statuses=None, before=None, limit=100):
    """Return up to `limit` messages, newest first, older than cursor `before`."""
    ranges = [(status,) for status in statuses] if statuses else [()]
    pages, params = [], []
    for status in ranges:
        conditions = ["status = ?"] * len(status)
        if before is not None:
            conditions.append("seq < ?")
        where = " AND ".join(conditions) or "1 = 1"
        pages.append(f"SELECT * FROM messages WHERE {where} ORDER BY seq DESC LIMIT ?")
        params += [*status, *([] if before is None else [before]), limit]

    if len(pages) == 1:
        sql = pages[0]
    else:
        # One index range per status, each already in order and cut to a page,
        # so a filter on several statuses never sorts the whole table.
        parts = (f"SELECT * FROM ({page}) AS part{n}" for n, page in enumerate(pages))
        sql = f"{' UNION ALL '.join(parts)} ORDER BY seq DESC LIMIT ?"
        params.append(limit)

    with db.reading() as conn:
        rows = conn.execute(sql, params).fetchall()
    return [dict(row) for row in rows]


def claim_idempotency_key(db, key, fingerprint, now, expired_before):
    """Claim a key for a new request; return None if claimed, else its stored row."""
    try:
        with db.transaction() as conn:
            conn.execute(
                "DELETE FROM idempotency_keys WHERE created_at < ?", (expired_before,)
            )
            claimed = conn.execute(
                "INSERT INTO idempotency_keys (idempotency_key, fingerprint, state,"
                " created_at) VALUES (?, ?, 'pending', ?)"
                " ON CONFLICT (idempotency_key) DO NOTHING",
                (key, fingerprint, now),
            ).rowcount
            if claimed:
                return None
            return _key_row(conn, key)
    except DRIVER_ERRORS as error:
        raise StorageError(str(error)) from error


def find_idempotency_key(db, key):
    """Return the stored row of a key, or None."""
    with db.reading() as conn:
        return _key_row(conn, key)


def finish_idempotency_key(db, key, status, body, headers):
    """Keep the answer given for a key, for its repeats."""
    try:
        with db.transaction() as conn:
            conn.execute(
                "UPDATE idempotency_keys SET state = 'done', response_status = ?,"
                " response_body = ?, response_headers = ? WHERE idempotency_key = ?",
                (status, body, headers, key),
            )
    except DRIVER_ERRORS as error:
        raise StorageError(str(error)) from error


def release_idempotency_key(db, key):
    """Forget a claimed key whose request surely sent nothing."""
    try:
        with db.transaction() as conn:
            conn.execute(
                "DELETE FROM idempotency_keys WHERE idempotency_key = ?"
                " AND state = 'pending'",
                (key,),
            )
    except DRIVER_ERRORS as error:
        raise StorageError(str(error)) from error


def _key_row(conn, key):
    row = conn.execute(
        "SELECT * FROM idempotency_keys WHERE idempotency_key = ?", (key,)
    ).fetchone()
    return None if row is None else dict(row)


# Copying a SQLite database into PostgreSQL. The columns are named, not the
# sequence numbers: the target numbers rows itself, in the order they come.
# Per table: its columns, its unique key, the order rows are read in, and
# whether a row waits until its message is in the target. A receipt does: the
# trigger that times it must see its message, and a receipt and a message
# inserted apart, in concurrent transactions, would not see each other. A
# later run copies what waited.
COPIED_TABLES = {
    "messages": (
        "message_id, direction, from_number, to_number, text, status, status_rank,"
        " parts, encoding, cost_amount, cost_currency, error_code, error_title,"
        " error_detail, sent_at, completed_at, created_at, updated_at",
        "message_id",
        "seq",
        False,
    ),
    "events": (
        "event_id, message_id, event_type, status, occurred_at, received_at",
        "event_id",
        "seq",
        False,
    ),
    "receipts": (
        "message_id, event_id, status, error_code, error_title, error_detail,"
        " occurred_at, recorded_at",
        "message_id",
        "recorded_at, message_id",
        True,
    ),
}
COPY_BATCH = 1000
_MESSAGE_STORED = "EXISTS (SELECT 1 FROM messages WHERE message_id = ?)"


def copy_database(source, target):
    """Copy every message, event and receipt of `source` that `target` lacks.

    Rows already in `target` are left as they are, so a copy can be run again
    after an interruption, or to pick up what arrived since the last run.
    Return, per table, how many rows were read and how many were new.
    """
    report = {}
    for table, (columns, key, order, after_message) in COPIED_TABLES.items():
        marks = ", ".join("?" for _ in columns.split(","))
        # SQLite needs a WHERE to read ON CONFLICT after a SELECT.
        condition = _MESSAGE_STORED if after_message else "1 = 1"
        insert = (
            f"INSERT INTO {table} ({columns}) SELECT {marks} WHERE {condition}"
            f" ON CONFLICT ({key}) DO NOTHING"
        )
        read = added = 0
        try:
            with source.reading() as reader:
                rows = reader.execute(f"SELECT {columns} FROM {table} ORDER BY {order}")
                while batch := rows.fetchmany(COPY_BATCH):
                    with target.transaction() as writer:
                        for row in batch:
                            values = tuple(row)
                            if after_message:
                                values += (row["message_id"],)
                            added += writer.execute(insert, values).rowcount
                    read += len(batch)
        except DRIVER_ERRORS as error:
            raise StorageError(str(error)) from error
        report[table] = (read, added)
    return report


def unfinished_messages(db, created_before, batch=500):
    """Yield (message id, status) of every message not final, oldest first."""
    after = 0
    while True:
        with db.reading() as conn:
            rows = conn.execute(
                "SELECT seq, message_id, status FROM messages"
                " WHERE status_rank < ? AND created_at < ? AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (FINAL_RANK, created_before, after, batch),
            ).fetchall()
        for row in rows:
            yield row["message_id"], row["status"]
        if len(rows) < batch:
            return
        after = rows[-1]["seq"]


def status_of(db, message_id):
    """The stored status of one message, or None."""
    with db.reading() as conn:
        row = conn.execute(
            "SELECT status FROM messages WHERE message_id = ?", (message_id,)
        ).fetchone()
    return None if row is None else row["status"]
