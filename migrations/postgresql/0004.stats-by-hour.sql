-- depends: 0003.messages-by-creation
-- The same tables as migrations/sqlite/ of the same name, kept up to date by
-- trigger functions instead of SQLite's trigger bodies. Titles are kept to
-- their first 200 characters, as there: an index entry must fit in a third of
-- a page, and a whole title of up to 2,000 characters may not. `shard` is the
-- writing connection's process id modulo 8: concurrent transactions that
-- change messages of the same hour and status mostly lock different rows,
-- instead of all queuing on one until the first commits.

CREATE TABLE message_counts (
    hour TEXT NOT NULL,
    status TEXT NOT NULL,
    status_rank INTEGER NOT NULL,
    error_code TEXT NOT NULL,
    error_title TEXT NOT NULL,
    shard INTEGER NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (hour, status, status_rank, error_code, error_title, shard)
);

-- Tenths of a second are BIGINT: a receipt years after its send would
-- overflow an INTEGER.
CREATE TABLE delivery_times (
    hour TEXT NOT NULL,
    tenth BIGINT NOT NULL,
    shard INTEGER NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (hour, tenth, shard)
);

-- The functions take columns rather than rows, so that nothing but the
-- triggers depends on the tables' row types.
CREATE FUNCTION count_message(
    created_at TEXT, status TEXT, status_rank INTEGER, error_code TEXT,
    error_title TEXT, delta INTEGER
) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO message_counts VALUES (
        substr(created_at, 1, 13), status, status_rank, COALESCE(error_code, ''),
        COALESCE(substr(error_title, 1, 200), ''), pg_backend_pid() % 8, delta
    )
    ON CONFLICT (hour, status, status_rank, error_code, error_title, shard)
    DO UPDATE SET n = message_counts.n + delta;
$$;

-- Whole tenths of a second from a message's creation to its receipt, the same
-- expression as PostgresDatabase.TENTHS_BETWEEN, counted while both are
-- stored, whichever of the two is written first.
CREATE FUNCTION time_receipt(
    receipt_message_id TEXT, occurred_at TEXT, delta INTEGER
) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO delivery_times
    SELECT substr(m.created_at, 1, 13),
        FLOOR(EXTRACT(EPOCH FROM (CAST(occurred_at AS timestamptz)
            - CAST(m.created_at AS timestamptz))) * 10),
        pg_backend_pid() % 8, delta
    FROM messages AS m
    WHERE m.message_id = receipt_message_id AND occurred_at >= m.created_at
    ON CONFLICT (hour, tenth, shard) DO UPDATE SET n = delivery_times.n + delta;
$$;

CREATE FUNCTION time_message(
    timed_message_id TEXT, created_at TEXT, delta INTEGER
) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO delivery_times
    SELECT substr(created_at, 1, 13),
        FLOOR(EXTRACT(EPOCH FROM (CAST(r.occurred_at AS timestamptz)
            - CAST(created_at AS timestamptz))) * 10),
        pg_backend_pid() % 8, delta
    FROM receipts AS r
    WHERE r.message_id = timed_message_id AND r.occurred_at >= created_at
    ON CONFLICT (hour, tenth, shard) DO UPDATE SET n = delivery_times.n + delta;
$$;

CREATE FUNCTION messages_counted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM count_message(NEW.created_at, NEW.status, NEW.status_rank,
            NEW.error_code, NEW.error_title, 1);
        PERFORM time_message(NEW.message_id, NEW.created_at, 1);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM count_message(OLD.created_at, OLD.status, OLD.status_rank,
            OLD.error_code, OLD.error_title, -1);
        PERFORM time_message(OLD.message_id, OLD.created_at, -1);
    ELSIF (OLD.status, OLD.status_rank, OLD.error_code, OLD.error_title)
        IS DISTINCT FROM (NEW.status, NEW.status_rank, NEW.error_code, NEW.error_title)
    THEN
        -- Every transaction takes the two rows in the same order, so two that
        -- swap keys wait for each other instead of deadlocking.
        IF (OLD.status, OLD.status_rank, COALESCE(OLD.error_code, ''),
            COALESCE(substr(OLD.error_title, 1, 200), ''))
            < (NEW.status, NEW.status_rank, COALESCE(NEW.error_code, ''),
            COALESCE(substr(NEW.error_title, 1, 200), ''))
        THEN
            PERFORM count_message(OLD.created_at, OLD.status, OLD.status_rank,
                OLD.error_code, OLD.error_title, -1);
            PERFORM count_message(NEW.created_at, NEW.status, NEW.status_rank,
                NEW.error_code, NEW.error_title, 1);
        ELSE
            PERFORM count_message(NEW.created_at, NEW.status, NEW.status_rank,
                NEW.error_code, NEW.error_title, 1);
            PERFORM count_message(OLD.created_at, OLD.status, OLD.status_rank,
                OLD.error_code, OLD.error_title, -1);
        END IF;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER messages_counted
AFTER INSERT OR DELETE OR UPDATE OF status, status_rank, error_code, error_title
ON messages
FOR EACH ROW EXECUTE FUNCTION messages_counted();

CREATE FUNCTION receipts_timed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM time_receipt(OLD.message_id, OLD.occurred_at, -1);
    ELSE
        PERFORM time_receipt(NEW.message_id, NEW.occurred_at, 1);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER receipts_timed AFTER INSERT OR DELETE ON receipts
FOR EACH ROW EXECUTE FUNCTION receipts_timed();

-- What was stored before this migration.
INSERT INTO message_counts
SELECT substr(created_at, 1, 13), status, status_rank, COALESCE(error_code, ''),
    COALESCE(substr(error_title, 1, 200), ''), 0, COUNT(*)
FROM messages
GROUP BY 1, 2, 3, 4, 5;

INSERT INTO delivery_times
SELECT substr(m.created_at, 1, 13),
    FLOOR(EXTRACT(EPOCH FROM (CAST(r.occurred_at AS timestamptz)
        - CAST(m.created_at AS timestamptz))) * 10),
    0, COUNT(*)
FROM messages AS m JOIN receipts AS r ON r.message_id = m.message_id
WHERE r.occurred_at >= m.created_at
GROUP BY 1, 2;
