"""Idempotency-Key for sends: a repeat is answered the first answer, not resent.

The keys live in the database, so this holds across restarts and worker
processes; the unique key in the table decides which of two racing requests
sends.
"""

import hashlib
import json
import re
import time
from datetime import UTC, datetime, timedelta

from flask import Response

import db
from messaging import iso_utc

KEY_FORMAT = re.compile(r"[A-Za-z0-9_:-]{1,255}")
LIFETIME = timedelta(hours=24)
POLL_SECONDS = 0.05


class KeyConflict(Exception):
    """The key cannot be used for this request; `status` says why (409 or 422)."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def fingerprint(*parts):
    """A digest of what a request asks for, to tell a repeat from a reuse."""
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def once(database, key, digest, action, wait_seconds):
    """Answer `action()` for a new key, or the answer stored for a repeated one.

    `action` returns a response and whether it may have sent a text. Only
    those answers are kept: a refusal that sent nothing frees the key for a
    corrected retry. A request that stopped before answering (its worker was
    killed, say) leaves its key held: whether it sent is unknown, so a repeat
    is told so rather than sent again.
    """
    deadline = time.monotonic() + wait_seconds
    abandoned_before = iso_utc(datetime.now(UTC) - timedelta(seconds=wait_seconds))
    while True:
        now = datetime.now(UTC)
        stored = db.claim_idempotency_key(
            database, key, digest, iso_utc(now), iso_utc(now - LIFETIME)
        )
        if stored is None:
            return _run(database, key, action)
        if stored["fingerprint"] != digest:
            raise KeyConflict(
                422, "This Idempotency-Key was already used with a different body."
            )

        # Another request holds the key: wait for its answer.
        while stored is not None and stored["state"] == "pending":
            if stored["created_at"] < abandoned_before:
                raise KeyConflict(
                    409,
                    "The request that first used this Idempotency-Key stopped "
                    "before answering; whether it sent the text is unknown. "
                    "Check GET /messages before sending again.",
                )
            if time.monotonic() > deadline:
                raise KeyConflict(
                    409,
                    "A request with this Idempotency-Key is still in progress; "
                    "check GET /messages before sending again.",
                )
            time.sleep(POLL_SECONDS)
            stored = db.find_idempotency_key(database, key)
        if stored is not None:
            return _replay(stored)
        # The other request sent nothing and freed the key: claim it again.


def _run(database, key, action):
    # An exception, or a worker stopped by a signal, leaves the key held.
    response, may_have_sent = action()
    if not may_have_sent:
        db.release_idempotency_key(database, key)
        return response
    headers = {
        name: value
        for name, value in response.headers.items()
        if name in ("Retry-After",)
    }
    db.finish_idempotency_key(
        database,
        key,
        response.status_code,
        response.get_data(as_text=True),
        json.dumps(headers),
    )
    return response


def _replay(stored):
    response = Response(
        stored["response_body"],
        stored["response_status"],
        mimetype="application/json",
    )
    response.headers.update(json.loads(stored["response_headers"] or "{}"))
    response.headers["Idempotent-Replayed"] = "true"
    return response
