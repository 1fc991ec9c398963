-- depends: 0002.idempotency-keys
-- Serves GET /stats, which counts the messages created within a window.

CREATE INDEX messages_created ON messages (created_at);
