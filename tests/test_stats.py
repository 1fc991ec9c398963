"""GET /stats: known answers on a seeded database."""

from datetime import datetime, timedelta

import pytest

from messaging import iso_utc

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
