-- depends: 0003.messages-by-creation
-- GET /stats reads whole hours from two small tables that triggers keep up to
-- date in the same transaction as every change to a message or receipt, so a
-- week of a million messages is a few thousand rows to add up. Only the
-- partial hours at the ends of a window are counted from the messages.
--
-- The hour is the first 13 characters of created_at ('2026-11-30T12'), which
-- never changes once a message is stored. A missing error code or title is
-- kept as '' because a key column must not be NULL, and a title is kept to its
-- first 200 characters, which PostgreSQL's index on the key can always hold. `shard` spreads
-- concurrent writers over several rows on PostgreSQL; SQLite has one writer
-- at a time and always uses 0. Counts in a row may be 0 or negative; only
-- their sums mean anything.

CREATE TABLE message_counts (
    hour TEXT NOT NULL,
    status TEXT NOT NULL,
    status_rank INTEGER NOT NULL,
    error_code TEXT NOT NULL,
    error_title TEXT NOT NULL,
    shard INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (hour, status, status_rank, error_code, error_title, shard)
) WITHOUT ROWID;

-- A message's time to its final status is counted while both it and its
-- receipt are stored, whichever of the two is written first.
CREATE TABLE delivery_times (
    hour TEXT NOT NULL,
    tenth INTEGER NOT NULL,
    shard INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (hour, tenth, shard)
) WITHOUT ROWID;

CREATE TRIGGER messages_counted_in AFTER INSERT ON messages
BEGIN
    INSERT INTO message_counts VALUES (
        substr(NEW.created_at, 1, 13), NEW.status, NEW.status_rank,
        COALESCE(NEW.error_code, ''), COALESCE(substr(NEW.error_title, 1, 200), ''), 0, 1
    ) ON CONFLICT DO UPDATE SET n = n + 1;
    INSERT INTO delivery_times
    SELECT substr(NEW.created_at, 1, 13),
        CAST((julianday(r.occurred_at) - julianday(NEW.created_at)) * 864000
            + 0.005 AS INTEGER),
        0, 1
    FROM receipts AS r
    WHERE r.message_id = NEW.message_id AND r.occurred_at >= NEW.created_at
    ON CONFLICT DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER messages_counted_out AFTER DELETE ON messages
BEGIN
    INSERT INTO message_counts VALUES (
        substr(OLD.created_at, 1, 13), OLD.status, OLD.status_rank,
        COALESCE(OLD.error_code, ''), COALESCE(substr(OLD.error_title, 1, 200), ''), 0, -1
    ) ON CONFLICT DO UPDATE SET n = n - 1;
    INSERT INTO delivery_times
    SELECT substr(OLD.created_at, 1, 13),
        CAST((julianday(r.occurred_at) - julianday(OLD.created_at)) * 864000
            + 0.005 AS INTEGER),
        0, -1
    FROM receipts AS r
    WHERE r.message_id = OLD.message_id AND r.occurred_at >= OLD.created_at
    ON CONFLICT DO UPDATE SET n = n - 1;
END;

CREATE TRIGGER messages_counted_again
AFTER UPDATE OF status, status_rank, error_code, error_title ON messages
WHEN OLD.status IS NOT NEW.status OR OLD.status_rank IS NOT NEW.status_rank
    OR OLD.error_code IS NOT NEW.error_code
    OR OLD.error_title IS NOT NEW.error_title
BEGIN
    INSERT INTO message_counts VALUES (
        substr(OLD.created_at, 1, 13), OLD.status, OLD.status_rank,
        COALESCE(OLD.error_code, ''), COALESCE(substr(OLD.error_title, 1, 200), ''), 0, -1
    ) ON CONFLICT DO UPDATE SET n = n - 1;
    INSERT INTO message_counts VALUES (
        substr(NEW.created_at, 1, 13), NEW.status, NEW.status_rank,
        COALESCE(NEW.error_code, ''), COALESCE(substr(NEW.error_title, 1, 200), ''), 0, 1
    ) ON CONFLICT DO UPDATE SET n = n + 1;
END;

-- Whole tenths of a second from the message's creation to its receipt: the
-- same expression as SQLiteDatabase.TENTHS_BETWEEN.
CREATE TRIGGER receipts_timed_in AFTER INSERT ON receipts
BEGIN
    INSERT INTO delivery_times
    SELECT substr(m.created_at, 1, 13),
        CAST((julianday(NEW.occurred_at) - julianday(m.created_at)) * 864000
            + 0.005 AS INTEGER),
        0, 1
    FROM messages AS m
    WHERE m.message_id = NEW.message_id AND NEW.occurred_at >= m.created_at
    ON CONFLICT DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER receipts_timed_out AFTER DELETE ON receipts
BEGIN
    INSERT INTO delivery_times
    SELECT substr(m.created_at, 1, 13),
        CAST((julianday(OLD.occurred_at) - julianday(m.created_at)) * 864000
            + 0.005 AS INTEGER),
        0, -1
    FROM messages AS m
    WHERE m.message_id = OLD.message_id AND OLD.occurred_at >= m.created_at
    ON CONFLICT DO UPDATE SET n = n - 1;
END;

-- What was stored before this migration.
INSERT INTO message_counts
SELECT substr(created_at, 1, 13), status, status_rank, COALESCE(error_code, ''),
    COALESCE(substr(error_title, 1, 200), ''), 0, COUNT(*)
FROM messages
GROUP BY 1, 2, 3, 4, 5;

INSERT INTO delivery_times
SELECT substr(m.created_at, 1, 13),
    CAST((julianday(r.occurred_at) - julianday(m.created_at)) * 864000
        + 0.005 AS INTEGER),
    0, COUNT(*)
FROM messages AS m JOIN receipts AS r ON r.message_id = m.message_id
WHERE r.occurred_at >= m.created_at
GROUP BY 1, 2;
