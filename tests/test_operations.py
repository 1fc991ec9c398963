"""GET /healthz and GET /metrics: what load balancers and Prometheus read."""

import json
from concurrent.futures import ThreadPoolExecutor

import requests
from prometheus_client.parser import text_string_to_metric_families
from support import load_event, new_id

from signature import sign

TOKEN = "operations-token-0123456789"


def samples(text):
    """{(name, labels...): value} of a Prometheus text exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, *sorted(sample.labels.items()))] = sample.value
    return found


def scrape(client, **kwargs):
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200
    return samples(response.get_data(as_text=True))


def webhook_count(found, outcome, reason=""):
    key = ("receipts_webhooks_total", ("outcome", outcome), ("reason", reason))
    return found.get(key, 0)


def test_health_is_ok_while_the_database_answers(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "up"}


def test_health_is_503_json_when_the_database_does_not(client, store):
    store.execute("DROP TABLE messages")

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "database": "down"}


def test_health_is_open_but_metrics_need_the_token(make_app):
    client = make_app(API_TOKEN=TOKEN).test_client()
    remote = {"REMOTE_ADDR": "203.0.113.5"}

    assert client.get("/healthz", environ_base=remote).status_code == 200
    assert client.get("/metrics", environ_base=remote).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/metrics", headers=auth, environ_base=remote).status_code == 200


def test_metrics_count_every_webhook_outcome_and_send(client, webhooks, telnyx):
    before = scrape(client)
    event = load_event("message-finalized-delivered")
    webhooks.post(event)
    webhooks.post(event)
    webhooks.post(load_event("message-received"))
    webhooks.post(b"[]")
    client.post("/webhooks/message", data=b"{}")
    client.post("/sms/send", json={"to": "+13125550147", "message": "Hi"})
    client.post("/sms/send", json={"to": "+13125550105", "message": "Hi"})

    after = scrape(client)

    def delta(key):
        return after.get(key, 0) - before.get(key, 0)

    for outcome, reason in [
        ("processed", ""),
        ("duplicate", ""),
        ("ignored", ""),
        ("rejected", "malformed"),
        ("rejected", "missing_header"),
    ]:
        assert (
            webhook_count(after, outcome, reason)
            - webhook_count(before, outcome, reason)
            == 1
        ), (outcome, reason)
    assert delta(("receipts_sends_total", ("outcome", "accepted"))) == 1
    assert delta(("receipts_sends_total", ("outcome", "refused"))) == 1
    assert delta(("receipts_webhook_seconds_count",)) == 5
    assert after[("receipts_messages", ("status", "delivered"))] == 1
    assert after[("receipts_messages", ("status", "queued"))] == 1


def test_metrics_add_up_across_gunicorn_workers(gunicorn_server, signing_key):
    service, _ = gunicorn_server
    events = [
        load_event("message-sent", event_id=new_id(), message_id=new_id())
        for _ in range(40)
    ]

    def deliver(event):
        body = json.dumps(event).encode()
        headers = {**sign(signing_key, body), "Content-Type": "application/json"}
        return requests.post(
            f"{service.url}/webhooks/message", data=body, headers=headers, timeout=30
        ).status_code

    before = samples(requests.get(f"{service.url}/metrics", timeout=10).text)
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(deliver, events + events[:10]))
    # Any worker may answer the scrape; each must see every worker's counts.
    scrapes = [
        samples(requests.get(f"{service.url}/metrics", timeout=10).text)
        for _ in range(8)
    ]

    assert set(codes) == {200}
    for after in scrapes:
        processed = webhook_count(after, "processed") - webhook_count(
            before, "processed"
        )
        duplicate = webhook_count(after, "duplicate") - webhook_count(
            before, "duplicate"
        )
        assert (processed, duplicate) == (40, 10)
