"""Prometheus metrics: what the service did, summed over every worker process.

Under gunicorn, gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR before the
workers start, and each worker's counts go to files there that a scrape adds
up. Without it (python app.py, the sandbox), one process keeps them in memory.
"""

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

WEBHOOKS = Counter(
    "receipts_webhooks",
    "Webhooks received, by outcome; rejected ones also by reason.",
    ["outcome", "reason"],
)
SENDS = Counter(
    "receipts_sends",
    "Sends asked for, by outcome: accepted, refused (by Telnyx), unknown "
    "(Telnyx may have sent it), or failed (not sent).",
    ["outcome"],
)
WEBHOOK_SECONDS = Histogram(
    "receipts_webhook_seconds",
    "Time to handle a webhook, from the body read to the answer.",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)


# Every label set the service counts. Under gunicorn, a label set's first use
# in a process creates its value in the worker's file, which took a millisecond
# off the first webhook's answer; prepare() creates them all at start.
WEBHOOK_OUTCOMES = [("processed", ""), ("duplicate", ""), ("ignored", "")] + [
    ("rejected", reason)
    for reason in (
        "bad_signature",
        "stale_timestamp",
        "missing_header",
        "bad_timestamp",
        "malformed",
    )
]
SEND_OUTCOMES = ("accepted", "refused", "unknown", "failed")


def prepare():
    """Create every counter at zero, before the first request needs it."""
    for outcome, reason in WEBHOOK_OUTCOMES:
        WEBHOOKS.labels(outcome=outcome, reason=reason)
    for outcome in SEND_OUTCOMES:
        SENDS.labels(outcome=outcome)


def count_webhook(outcome, reason=""):
    """Count one webhook outcome."""
    WEBHOOKS.labels(outcome=outcome, reason=reason).inc()


def count_send(status_code):
    """Count one send by the HTTP status the service answered."""
    if status_code < 300:
        outcome = "accepted"
    elif status_code in (500, 502, 504):
        outcome = "unknown"
    elif status_code == 503:
        outcome = "failed"
    else:
        outcome = "refused"
    SENDS.labels(outcome=outcome).inc()


def exposition(status_counts):
    """The text a scrape gets: the counters and the messages stored by status."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY as registry

    stored = _StoredMessages(status_counts)
    registry.register(stored)
    try:
        return generate_latest(registry), CONTENT_TYPE_LATEST
    finally:
        registry.unregister(stored)


class _StoredMessages:
    """The messages in the database by status, read at scrape time."""

    def __init__(self, status_counts):
        self.status_counts = status_counts

    def collect(self):
        family = GaugeMetricFamily(
            "receipts_messages", "Messages stored, by status.", labels=["status"]
        )
        for status, count in self.status_counts:
            family.add_metric([status], count)
        yield family
