-- The first schema: messages, the status events received for them, and one
-- delivery receipt per message. Timestamps are ISO-8601 UTC text ending in Z.
-- The same as migrations/sqlite/ of the same name, but for how each database
-- numbers rows: an identity column here, SQLite's rowid there.

CREATE TABLE messages (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    direction TEXT,
    from_number TEXT,
    to_number TEXT,
    text TEXT,
    status TEXT NOT NULL,
    status_rank INTEGER NOT NULL,
    parts INTEGER,
    encoding TEXT,
    cost_amount TEXT,
    cost_currency TEXT,
    error_code TEXT,
    error_title TEXT,
    error_detail TEXT,
    sent_at TEXT,
    completed_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Serves GET /messages?status=..., newest first.
CREATE INDEX messages_status_seq ON messages (status, seq);

CREATE TABLE events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    message_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    status TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    received_at TEXT NOT NULL
);

-- Serves the event history of one message.
CREATE INDEX events_message ON events (message_id, occurred_at);

CREATE TABLE receipts (
    message_id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    status TEXT NOT NULL,
    error_code TEXT,
    error_title TEXT,
    error_detail TEXT,
    occurred_at TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
