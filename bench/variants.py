"""The service with part of a webhook's storage left out, to see what each part costs.

For the benchmark only: `gunicorn "bench.variants:app_without('no-storage')"`.
The webhook is still verified, parsed, logged and answered as usual.
"""

import app as service
import db

EVENT_ONLY = (
    "INSERT INTO events (event_id, message_id, event_type, status, occurred_at,"
    " received_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"
)


def _no_storage(database, event_id, event_type, update):
    return True


def _empty_commit(database, event_id, event_type, update):
    with database.transaction():
        return True


def _event_only(database, event_id, event_type, update):
    row = (event_id, update.message_id, event_type, update.status)
    with database.transaction() as conn:
        return conn.execute(EVENT_ONLY, (*row, update.occurred_at, "")).rowcount == 1


VARIANTS = {
    "no-storage": _no_storage,
    "empty-commit": _empty_commit,
    "event-only": _event_only,
}


def app_without(variant):
    """The service, with apply_event replaced by the named variant."""
    db.apply_event = VARIANTS[variant]
    return service.create_app()
