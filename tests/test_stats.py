"""GET /stats: known answers on a seeded database."""

import random
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from support import load_event, new_id

import db
from backends import PostgresDatabase
from messaging import FAILURE_STATUSES, ErrorInfo, MessageUpdate, iso_utc, rank_of

WINDOW = "since=2026-11-01T00:00:00Z&until=2026-11-08T00:00:00Z"

# message id, status, rank, created at, error code and title, seconds to final
SEEDED = [
    ("m1", "delivered", 10, "2026-11-02T10:00:00.000Z", None, None, 4),
    ("m2", "delivered", 10, "2026-11-02T11:00:00.000Z", None, None, 10),
    (
        "m3",
        "delivery_failed",
        10,
        "2026-11-03T09:00:00.000Z",
        "40008",
        "Undeliverable",
        30,
    ),
    (
        "m4",
        "delivery_failed",
        10,
        "2026-11-03T09:30:00.000Z",
        "40008",
        "Undeliverable",
        2,
    ),
    (
        "m5",
        "sending_failed",
        10,
        "2026-11-03T10:00:00.000Z",
        "40001",
        "Not routable",
        1,
    ),
    ("m6", "delivery_unconfirmed", 10, "2026-11-04T00:00:00.000Z", None, None, 100),
    ("m7", "sent", 3, "2026-11-04T01:00:00.000Z", None, None, None),
    ("m8", "delivered", 10, "2026-10-20T00:00:00.000Z", None, None, 5),
    ("m9", "expired", 10, "2026-11-05T00:00:00.000Z", "40005", "Expired", 60),
]


def later(stamp, seconds):
    return iso_utc(datetime.fromisoformat(stamp) + timedelta(seconds=seconds))


@pytest.fixture
def seeded(app, store):
    for message_id, status, rank, created, code, title, seconds in SEEDED:
        code_sql = f"'{code}'" if code else "NULL"
        title_sql = f"'{title}'" if title else "NULL"
        store.execute(
            "INSERT INTO messages (message_id, status, status_rank, error_code,"
            f" error_title, created_at, updated_at) VALUES ('{message_id}',"
            f" '{status}', {rank}, {code_sql}, {title_sql}, '{created}', '{created}')"
        )
        if seconds is not None:
            store.execute(
                "INSERT INTO receipts (message_id, event_id, status, occurred_at,"
                f" recorded_at) VALUES ('{message_id}', 'e-{message_id}', '{status}',"
                f" '{later(created, seconds)}', '{later(created, seconds)}')"
            )
    return app.test_client()


def test_counts_and_delivery_rate_over_the_window(seeded):
    stats = seeded.get(f"/stats?{WINDOW}").get_json()

    assert stats["since"] == "2026-11-01T00:00:00.000Z"
    assert stats["until"] == "2026-11-08T00:00:00.000Z"
    assert stats["messages"] == 8
    assert stats["by_status"] == {
        "delivered": 2,
        "delivery_failed": 2,
        "delivery_unconfirmed": 1,
        "expired": 1,
        "sending_failed": 1,
        "sent": 1,
    }
    assert (stats["final"], stats["delivered"]) == (7, 2)
    assert stats["delivery_rate"] == round(2 / 7, 4)


def test_failures_are_grouped_by_code_with_what_a_retry_can_do(seeded):
    failures = seeded.get(f"/stats?{WINDOW}").get_json()["failures"]

    assert [(f["code"], f["count"]) for f in failures] == [
        ("40008", 2),
        ("40001", 1),
        ("40005", 1),
    ]
    assert failures[0]["title"] == "Undeliverable"
    assert failures[0]["retry"] == "yes with backoff"
    assert failures[1]["retry"] == "no"
    assert failures[1]["explanation"]


def test_time_to_final_status_percentiles(seeded):
    timing = seeded.get(f"/stats?{WINDOW}").get_json()["time_to_final"]

    # Durations 1, 2, 4, 10, 30, 60, 100 s: nearest-rank p50 is the 4th, p95
    # the 7th.
    assert timing == {"measured": 7, "p50_seconds": 10.0, "p95_seconds": 100.0}


def test_daily_series(seeded):
    daily = seeded.get(f"/stats?{WINDOW}").get_json()["daily"]

    assert daily == [
        {"date": "2026-11-02", "sent": 2, "delivered": 2, "failed": 0},
        {"date": "2026-11-03", "sent": 3, "delivered": 0, "failed": 3},
        {"date": "2026-11-04", "sent": 2, "delivered": 0, "failed": 0},
        {"date": "2026-11-05", "sent": 1, "delivered": 0, "failed": 1},
    ]


def test_default_window_is_the_last_seven_days(client, webhooks, telnyx):
    client.post("/sms/send", json={"to": "+13125550147", "message": "Hi"})

    stats = client.get("/stats").get_json()

    assert stats["messages"] == 1
    assert stats["by_status"] == {"queued": 1}
    assert stats["delivery_rate"] is None
    assert stats["time_to_final"] == {
        "measured": 0,
        "p50_seconds": None,
        "p95_seconds": None,
    }


@pytest.mark.parametrize(
    "query",
    [
        "since=yesterday",
        "until=2026-13-01",
        "since=2026-11-08&until=2026-11-01",
        "since=0001-01-01T00:00:00%2B05:00",
        "window=7d",
        "since=2026-11-01&since=2026-11-02",
    ],
)
def test_bad_windows_answer_400(client, query):
    response = client.get(f"/stats?{query}")

    assert response.status_code == 400
    assert response.get_json()["error"]


def test_partial_hours_at_either_end_are_counted_exactly(seeded):
    # From just after m1 (10:00:00.000) to exactly m4 (09:30, left out), with
    # whole hours between: both ends are counted from the messages.
    query = "since=2026-11-02T10:00:00.001Z&until=2026-11-03T09:30:00Z"
    stats = seeded.get(f"/stats?{query}").get_json()

    assert stats["by_status"] == {"delivered": 1, "delivery_failed": 1}
    assert stats["time_to_final"]["measured"] == 2
    assert stats["daily"] == [
        {"date": "2026-11-02", "sent": 1, "delivered": 1, "failed": 0},
        {"date": "2026-11-03", "sent": 1, "delivered": 0, "failed": 1},
    ]


def test_a_window_within_one_hour(seeded):
    stats = seeded.get(
        "/stats?since=2026-11-03T09:15:00Z&until=2026-11-03T09:45:00Z"
    ).get_json()

    assert stats["by_status"] == {"delivery_failed": 1}
    assert stats["failures"][0]["code"] == "40008"


# Messages spread over three days, moved on by real status events, then
# compared over random windows with what counting every stored row gives.
START = datetime(2026, 11, 1, tzinfo=UTC)
FINALS = [
    ("delivered", None),
    ("delivered", None),
    ("delivery_failed", ErrorInfo("40008", "Undeliverable", None)),
    ("delivery_failed", ErrorInfo("40008", "Unreachable", None)),
    ("sending_failed", ErrorInfo("40001", "Not routable", None)),
    ("expired", None),
    ("delivery_unconfirmed", None),
]


def scatter_messages(rng, database, store, count):
    for n in range(count):
        created = START + timedelta(milliseconds=rng.randrange(3 * 86_400_000))
        store.execute(
            "INSERT INTO messages (message_id, status, status_rank, created_at,"
            f" updated_at) VALUES ('r{n}', 'queued', 1, '{iso_utc(created)}',"
            f" '{iso_utc(created)}')"
        )
        for event in range(rng.choice([0, 1, 1, 2, 3])):
            status, error = rng.choice([*FINALS, ("sent", None)])
            occurred = created + timedelta(milliseconds=rng.randrange(-500, 400_000))
            update = MessageUpdate(
                f"r{n}", status, rank_of(status), iso_utc(occurred), error=error
            )
            db.apply_event(database, f"r{n}-{event}", "message.finalized", update)


def summed_by_status(found):
    summed = {}
    for status, _, n in found["by_status"]:
        summed[status] = summed.get(status, 0) + n
    return summed


def final_count(found):
    return sum(n for _, rank, n in found["by_status"] if rank >= 10)


def counted_by_hand(store, since, until):
    """The figures of a window, from every message and receipt, in Python."""
    receipts = dict(store.query("SELECT message_id, occurred_at FROM receipts"))
    by_status, daily, failures, tenths = {}, {}, {}, []
    rows = store.query(
        "SELECT message_id, status, status_rank, error_code, error_title, created_at"
        " FROM messages"
    )
    final = 0
    for message_id, status, rank, code, title, created in rows:
        if not since <= created < until:
            continue
        by_status[status] = by_status.get(status, 0) + 1
        final += rank >= 10
        day = daily.setdefault(created[:10], [0, 0, 0])
        day[0] += 1
        day[1] += status == "delivered"
        day[2] += status in FAILURE_STATUSES
        if status in FAILURE_STATUSES:
            seen = failures.setdefault(code, [None, 0])
            shown = title and title[:200]  # as the counts keep it
            seen[0] = max(filter(None, (seen[0], shown)), default=None)
            seen[1] += 1
        occurred = receipts.get(message_id)
        if occurred and occurred >= created:
            gap = datetime.fromisoformat(occurred) - datetime.fromisoformat(created)
            tenths.append(gap // timedelta(milliseconds=100) / 10)
    tenths.sort()
    return {
        "by_status": by_status,
        "final": final,
        "daily": {day: tuple(counts) for day, counts in daily.items()},
        "failures": {code: tuple(seen) for code, seen in failures.items()},
        "measured": len(tenths),
        "p50": tenths[-(-50 * len(tenths) // 100) - 1] if tenths else None,
        "p95": tenths[-(-95 * len(tenths) // 100) - 1] if tenths else None,
    }


@pytest.mark.parametrize("seed", [1, 2])
def test_any_window_agrees_with_counting_every_message(app, store, seed):
    rng = random.Random(seed)
    database = app.extensions["receipts"].database
    scatter_messages(rng, database, store, 150)
    db.warm_up(database)  # adds and removes a message: counted in, then out

    ends = [START + timedelta(hours=rng.randrange(-2, 76)) for _ in range(10)]
    ends += [START + timedelta(seconds=rng.randrange(-3600, 76 * 3600)) for _ in ends]
    for _ in range(25):
        since, until = sorted(rng.sample(ends, 2))
        since, until = iso_utc(since), iso_utc(until)
        found = db.delivery_stats(database, since, until, FAILURE_STATUSES)
        expected = counted_by_hand(store, since, until)

        assert summed_by_status(found) == expected["by_status"]
        assert final_count(found) == expected["final"]
        assert {d: tuple(c) for d, *c in found["daily"]} == expected["daily"]
        assert {c: (t, n) for c, t, n in found["failures"]} == expected["failures"]
        assert [n for *_, n in found["failures"]] == sorted(
            (n for *_, n in found["failures"]), reverse=True
        )
        assert found["measured"] == expected["measured"]
        assert (found["p50"], found["p95"]) == (expected["p50"], expected["p95"])


# Whole hours from the counts, and a window whose ends are counted row by row.
WINDOWS = [
    ("2026-01-01T00:00:00Z", "2036-01-01T00:00:00Z"),
    ("2026-01-01T00:00:00.001Z", "2036-01-01T00:00:00.001Z"),
]


def stats_in_every_window(client):
    return [
        client.get(f"/stats?since={since}&until={until}").get_json()
        for since, until in WINDOWS
    ]


def test_a_receipt_years_after_the_send_is_stored_and_timed(client, webhooks):
    message_id = new_id()
    sent_at = datetime.now(UTC)
    months = 7 * 12  # a receipt seven years late: over 2**31 tenths of a second
    late = iso_utc(sent_at.replace(year=sent_at.year + months // 12))
    final = load_event(
        "message-finalized-delivered", event_id=new_id(), message_id=message_id
    )
    final["data"]["occurred_at"] = late

    assert webhooks.post(final).status_code == 200
    for stats in stats_in_every_window(client):
        assert stats["time_to_final"]["measured"] == 1
        assert stats["time_to_final"]["p50_seconds"] > 7 * 365 * 86_400 - 86_400


def test_a_status_that_turns_final_under_the_same_name_counts_as_final(
    client, webhooks
):
    message_id = new_id()
    webhooks.post(load_event("message-sent", event_id=new_id(), message_id=message_id))
    final = load_event(
        "message-finalized-delivered",
        event_id=new_id(),
        message_id=message_id,
        status="sent",
    )
    webhooks.post(final)

    for stats in stats_in_every_window(client):
        assert stats["by_status"] == {"sent": 1}
        assert stats["final"] == 1


def test_a_receipt_stored_before_its_message_is_timed_once_both_are(app, store):
    # As a copy of a live database can leave them: the receipt, then later
    # its message.
    database = app.extensions["receipts"].database
    store.execute(
        "INSERT INTO receipts (message_id, event_id, status, occurred_at, recorded_at)"
        " VALUES ('early', 'e-early', 'delivered', '2026-11-02T10:00:04.000Z',"
        " '2026-11-02T10:00:04.000Z')"
    )
    store.execute(
        "INSERT INTO messages (message_id, status, status_rank, created_at,"
        " updated_at) VALUES ('early', 'delivered', 10, '2026-11-02T10:00:00.000Z',"
        " '2026-11-02T10:00:00.000Z')"
    )
    for since, until in [
        ("2026-11-01T00:00:00.000Z", "2026-11-08T00:00:00.000Z"),
        ("2026-11-02T09:59:00.000Z", "2026-11-02T10:01:00.000Z"),
    ]:
        found = db.delivery_stats(database, since, until, FAILURE_STATUSES)
        assert (found["measured"], found["p50"]) == (1, 4.0)

    db.warm_up(database)
    store.execute("DELETE FROM messages WHERE message_id = 'early'")
    found = db.delivery_stats(
        database, "2026-11-01T00:00:00.000Z", "2026-11-08T00:00:00.000Z", ()
    )
    assert found["measured"] == 0


def test_writers_that_swap_error_codes_never_deadlock(store):
    if store.kind != "postgresql":
        pytest.skip("SQLite has one writer at a time")
    # Two connections whose writes land on the same rows of the counts.
    first = PostgresDatabase(store.url, 1)
    first.migrate()
    opened = [first]
    while True:
        second = PostgresDatabase(store.url, 1)
        opened.append(second)
        if shard_of(second) == shard_of(first):
            break
    errors = [
        ErrorInfo("40008", "Undeliverable", None),
        ErrorInfo("40002", "Blocked", None),
    ]

    def sent(message_id, error):
        return MessageUpdate(
            message_id, "sent", rank_of("sent"), iso_utc(START), error=error
        )

    def swap(database, message_id, offset, failures):
        for n in range(150):
            update = sent(message_id, errors[(n + offset) % 2])
            try:
                db.apply_event(database, new_id(), "message.sent", update)
            except db.StorageError as error:
                failures.append(str(error))

    failures = []
    try:
        db.apply_event(first, new_id(), "message.sent", sent("a", errors[0]))
        db.apply_event(first, new_id(), "message.sent", sent("b", errors[1]))
        writers = [
            threading.Thread(target=swap, args=(first, "a", 1, failures)),
            threading.Thread(target=swap, args=(second, "b", 0, failures)),
        ]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        now, day = datetime.now(UTC), timedelta(days=1)
        since, until = iso_utc(now - day), iso_utc(now + day)
        found = db.delivery_stats(first, since, until, ("sent",))
    finally:
        for database in opened:
            database.close()

    assert failures == []
    assert {code: n for code, _, n in found["failures"]} == dict(
        Counter(code for (code,) in store.query("SELECT error_code FROM messages"))
    )


def shard_of(database):
    with database.reading() as conn:
        row = conn.execute("SELECT mod(pg_backend_pid(), 8) AS shard").fetchone()
    return row["shard"]


def test_a_long_error_title_is_stored_and_counted_by_its_start(client, webhooks):
    # 2,000 characters of three bytes each: too long for an index entry whole.
    title = "配信失敗" * 500
    event = load_event(
        "message-finalized-delivery-failed", event_id=new_id(), message_id=new_id()
    )
    event["data"]["payload"]["errors"][0].update(code="99999", title=title)

    assert webhooks.post(event).status_code == 200
    for stats in stats_in_every_window(client):
        (failure,) = stats["failures"]
        assert (failure["code"], failure["title"]) == ("99999", title[:200])
