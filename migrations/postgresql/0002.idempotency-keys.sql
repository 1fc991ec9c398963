-- depends: 0001.initial-schema
-- Idempotency-Key of POST /sms/send: the first answer given for a key, kept so
-- that a retry is answered the same without sending the text again.

CREATE TABLE idempotency_keys (
    idempotency_key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    response_status INTEGER,
    response_body TEXT,
    response_headers TEXT,
    created_at TEXT NOT NULL
);

-- Serves the removal of keys older than a day.
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
