-- depends: 0002.idempotency-keys
-- Serves GET /stats, which counts the messages created within a window: the
-- columns it groups by are in the index, so the table itself is not read.

CREATE INDEX messages_created ON messages (created_at, status, status_rank);
