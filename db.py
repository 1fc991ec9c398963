"""Storage: every SQL statement of the service, over SQLite."""

import fcntl
import logging
import os
import sqlite3
import threading
import weakref
from collections import deque
from contextlib import contextmanager
from pathlib import Path

from messaging import FINAL_RANK, FINALIZED, MessageUpdate, utc_now

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_SECONDS = 10.0


class StorageError(Exception):
    """The database could not complete a read or a write."""


class Database:
    """A SQLite file shared by threads and worker processes."""

    def __init__(self, path, synchronous="NORMAL"):
        self.path = os.path.abspath(path)
        self.synchronous = synchronous
        self._pid = None
        self._start_process()

    def _start_process(self):
        # Nothing opened before a fork is used after it: a SQLite connection
        # must not cross into a child process.
        self._pid = os.getpid()
        self._idle = deque()
        self._writer = threading.Lock()
        self._writer_fd = None

    def migrate(self):
        """Create the schema or bring it up to date; safe when run concurrently."""
        from yoyo import get_backend, read_migrations

        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with self.connect():
            pass  # switches the file to WAL before yoyo opens it
        backend = get_backend(f"sqlite:///{self.path}")
        try:
            with backend.lock(timeout=60):
                backend.apply_migrations(
                    backend.to_apply(read_migrations(str(MIGRATIONS)))
                )
        finally:
            backend.connection.close()

    @contextmanager
    def connect(self):
        """Lend an open connection from this process's pool."""
        if self._pid != os.getpid():
            self._start_process()
        try:
            conn = self._idle.pop()
        except IndexError:
            conn = self._open()
        try:
            yield conn
        finally:
            self._idle.append(conn)

    def _open(self):
        # Autocommit mode: transactions are opened explicitly, so each write
        # takes the lock up front and never fails half-way with "locked".
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_SECONDS,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        return conn

    @contextmanager
    def transaction(self):
        """Run a block of writes atomically; roll back on any error."""
        with self.connect() as conn, self._queued_writer():
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                raise StorageError(str(error)) from error
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _queued_writer(self):
        # Writers wait their turn on a thread lock and a file lock, which wake
        # the next one the moment they are released. SQLite's own busy handler
        # sleeps a millisecond or more between tries, which under load costs
        # more than the write itself. Other writers still meet the busy timeout.
        with self._writer:
            if self._writer_fd is None:
                fd = os.open(f"{self.path}-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
                weakref.finalize(self, os.close, fd)
                self._writer_fd = fd
            fcntl.flock(self._writer_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._writer_fd, fcntl.LOCK_UN)

    @contextmanager
    def reading(self):
        """Give a connection for reads, turning driver errors into StorageError."""
        with self.connect() as conn:
            try:
                yield conn
            except sqlite3.Error as error:
                raise StorageError(str(error)) from error


def record_sent(db, update):
    """Store a message Telnyx accepted, merging into a row a webhook made first."""
    try:
        with db.transaction() as conn:
            _upsert_message(conn, update, utc_now())
    except sqlite3.Error as error:
        raise StorageError(str(error)) from error


def apply_event(db, event_id, event_type, update):
    """Apply one status event exactly once; return False for a redelivery."""
    try:
        with db.transaction() as conn:
            return _apply_event(conn, event_id, event_type, update)
    except sqlite3.Error as error:
        raise StorageError(str(error)) from error


def warm_up(db):
    """Run the webhook's statements once, leaving nothing behind.

    SQLite prepares a statement on its first use in a connection, and the
    first commit after start sets up the write-ahead log; doing both at start
    keeps the first real webhook as fast as the ones after it.
    """
    # A control character: no id that passed the event parser can be equal.
    dummy = "\x00warm-up"
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
    except sqlite3.Error as error:
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
    except sqlite3.Error as error:
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
    except sqlite3.Error as error:
        raise StorageError(str(error)) from error


def _key_row(conn, key):
    row = conn.execute(
        "SELECT * FROM idempotency_keys WHERE idempotency_key = ?", (key,)
    ).fetchone()
    return None if row is None else dict(row)
