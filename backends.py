"""Where the data lives: a SQLite file, or a PostgreSQL server shared by instances.

Both give connections from a per-process pool, run a block of statements as
one transaction, and apply the migrations in migrations/<kind>/ at start,
once, however many processes start together.
"""

import fcntl
import os
import sqlite3
import threading
import weakref
from collections import deque
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_SECONDS = 10.0
MIGRATION_LOCK_SECONDS = 60
DRIVER_ERRORS = (sqlite3.Error, psycopg.Error)


class StorageError(Exception):
    """The database could not complete a read or a write."""


def open_database(settings):
    """The database the settings name."""
    if settings.database_url.startswith("sqlite:"):
        return SQLiteDatabase(settings.database_path, settings.sqlite_synchronous)
    return PostgresDatabase(settings.database_url, settings.database_pool_size)


def _apply_migrations(yoyo_url, folder):
    from yoyo import get_backend, read_migrations

    backend = get_backend(yoyo_url)
    try:
        # The lock is a row in the database itself, so instances that start
        # together wait for each other and the migrations run once.
        with backend.lock(timeout=MIGRATION_LOCK_SECONDS):
            backend.apply_migrations(backend.to_apply(read_migrations(str(folder))))
    finally:
        backend.connection.close()


class SQLiteDatabase:
    """A SQLite file shared by threads and worker processes."""

    kind = "sqlite"
    # Whole tenths of a second from one stored timestamp (ISO-8601 text) to a
    # later one. Stored times are whole milliseconds; half of one absorbs the
    # rounding of julianday's floating point.
    TENTHS_BETWEEN = (
        "CAST((julianday({end}) - julianday({start})) * 864000 + 0.005 AS INTEGER)"
    )

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
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with self.connect():
            pass  # switches the file to WAL before yoyo opens it
        _apply_migrations(f"sqlite:///{self.path}", MIGRATIONS / "sqlite")

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

    def describe(self):
        """Where the data is, for the log."""
        return self.path

    def close(self):
        """Close this process's idle connections."""
        while self._idle:
            self._idle.pop().close()


class PostgresDatabase:
    """A PostgreSQL database that several instances of the service share."""

    kind = "postgresql"
    TENTHS_BETWEEN = (
        "FLOOR(EXTRACT(EPOCH FROM (CAST({end} AS timestamptz)"
        + " - CAST({start} AS timestamptz))) * 10)"
    )

    def __init__(self, url, pool_size):
        self.url = url
        self.pool_size = pool_size
        self._pid = None
        self._pool = None

    def migrate(self):
        """Create the schema or bring it up to date; safe when run concurrently."""
        parts = urlsplit(self.url)
        _apply_migrations(
            urlunsplit(parts._replace(scheme="postgresql+psycopg")),
            MIGRATIONS / "postgresql",
        )

    def _pool_of_this_process(self):
        # A pool opened before a fork would share its sockets with the child.
        if self._pool is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._pool = ConnectionPool(
                self.url,
                min_size=1,
                max_size=self.pool_size,
                kwargs={"autocommit": True, "row_factory": dict_row},
                open=True,
                timeout=BUSY_TIMEOUT_SECONDS,
                name="receipts",
            )
        return self._pool

    @contextmanager
    def connect(self):
        """Lend a connection from this process's pool."""
        try:
            with self._pool_of_this_process().connection() as conn:
                yield _PostgresConnection(conn)
        except psycopg.Error as error:
            raise StorageError(str(error)) from error

    @contextmanager
    def transaction(self):
        """Run a block of writes atomically; roll back on any error."""
        with self.connect() as conn, conn.raw.transaction():
            yield conn

    @contextmanager
    def reading(self):
        """Give a connection for reads, turning driver errors into StorageError."""
        with self.connect() as conn:
            yield conn

    def describe(self):
        """Where the data is, for the log: the URL without its password."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        user = f"{parts.username}@" if parts.username else ""
        port = f":{parts.port}" if parts.port else ""
        return urlunsplit(parts._replace(netloc=f"{user}{host}{port}", query=""))

    def close(self):
        """Close this process's pool."""
        if self._pool is not None and self._pid == os.getpid():
            self._pool.close()
        self._pool = None


class _PostgresConnection:
    """A psycopg connection that takes the `?` placeholders the statements use."""

    def __init__(self, raw):
        self.raw = raw

    def execute(self, sql, params=()):
        return self.raw.execute(_with_percent_placeholders(sql), params)


@lru_cache(maxsize=256)
def _with_percent_placeholders(sql):
    return sql.replace("?", "%s")
