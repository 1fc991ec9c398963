"""GET /messages and GET /messages/<id>: what happened, newest first, in pages."""

import re

import pytest
from support import load_event, new_id

from messaging import FAILURE_STATUSES, KNOWN_STATUSES

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def store(webhooks, status, fixture="message-finalized-delivered"):
    """Store one message with a final status; return its id."""
    message_id = new_id()
    event = load_event(fixture, event_id=new_id(), message_id=message_id)
    event["data"]["payload"]["to"][0]["status"] = status
    assert webhooks.post(event).status_code == 200
    return message_id


def ids(response):
    return [message["message_id"] for message in response.get_json()]


def test_unknown_message_answers_404_json(client):
    response = client.get("/messages/4031a6d2-0000-4000-8000-000000000000")

    assert response.status_code == 404
    assert "No message" in response.get_json()["error"]


def test_message_without_receipt_has_no_receipt_field(client, webhooks):
    message_id = new_id()
    webhooks.post(load_event("message-sent", event_id=new_id(), message_id=message_id))

    shown = client.get(f"/messages/{message_id}").get_json()

    assert "delivery_receipt" not in shown
    assert shown["final"] is False
    assert [event["type"] for event in shown["events"]] == ["message.sent"]


def test_every_timestamp_is_utc_with_a_z(client, webhooks):
    event = load_event("message-finalized-delivered", event_id=new_id())
    event["data"]["occurred_at"] = "2026-09-14T18:02:14.918+02:00"
    webhooks.post(event)

    shown = client.get(f"/messages/{event['data']['payload']['id']}").get_json()

    stamps = [shown[key] for key in ("created_at", "updated_at", "sent_at")]
    stamps += [shown["delivery_receipt"][key] for key in ("occurred_at", "recorded_at")]
    stamps += [event["occurred_at"] for event in shown["events"]]
    assert all(ISO_UTC.match(stamp) for stamp in stamps), stamps
    assert shown["events"][0]["occurred_at"] == "2026-09-14T16:02:14.918Z"


def test_list_is_newest_first_even_within_one_second(client, webhooks):
    stored = [store(webhooks, "delivered") for _ in range(5)]

    response = client.get("/messages")

    assert response.status_code == 200
    assert ids(response) == list(reversed(stored))
    assert "Link" not in response.headers


def test_status_filter_returns_only_that_status(client, webhooks):
    delivered = store(webhooks, "delivered")
    store(webhooks, "delivery_failed", "message-finalized-delivery-failed")

    response = client.get("/messages?status=delivered")

    assert ids(response) == [delivered]


def test_failed_filter_returns_every_failure_status(client, webhooks):
    failures = [store(webhooks, status) for status in FAILURE_STATUSES]
    store(webhooks, "delivered")
    store(webhooks, "delivery_unconfirmed")
    store(webhooks, "cancelled")

    response = client.get("/messages?status=failed")

    assert ids(response) == list(reversed(failures))


def test_unknown_status_answers_400_listing_the_valid_ones(client):
    response = client.get("/messages?status=lost")

    assert response.status_code == 400
    answer = response.get_json()
    assert "lost" in answer["error"]
    assert answer["valid_statuses"] == [*KNOWN_STATUSES, "failed"]


def test_pages_follow_the_link_header_to_the_end(client, webhooks):
    stored = [store(webhooks, "delivered") for _ in range(7)]
    store(webhooks, "expired")

    seen, url, pages = [], "/messages?status=delivered&limit=3", 0
    while url:
        response = client.get(url)
        assert response.status_code == 200
        seen += ids(response)
        pages += 1
        link = response.headers.get("Link")
        url = re.match(r'<([^>]+)>; rel="next"', link).group(1) if link else None

    assert pages == 3
    assert seen == list(reversed(stored))


def test_default_page_is_100(client, webhooks):
    for _ in range(101):
        store(webhooks, "delivered")

    response = client.get("/messages")

    assert len(response.get_json()) == 100
    assert 'rel="next"' in response.headers["Link"]


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=ten",
        "limit=1e3",
        "cursor=0",
        "cursor=abc",
        "cursor=١٢",
        "page=2",
        "statuses=delivered",
        "limit=" + "1" * 4400,
        "cursor=" + "9" * 4400,
        "status=failed&status=bogus",
        "limit=1&limit=abc",
    ],
)
def test_bad_list_parameters_answer_400(client, query):
    response = client.get(f"/messages?{query}")

    assert response.status_code == 400
    assert response.get_json()["error"]


def test_limit_of_1000_is_accepted(client):
    assert client.get("/messages?limit=1000").status_code == 200
