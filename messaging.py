"""Telnyx's message vocabulary: statuses, their order, and webhook events."""

import json
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime

SENT = "sent"
FINALIZED = "message.finalized"
HANDLED_EVENTS = ("message.sent", FINALIZED)

# Statuses before the final one, in the order a message passes through them.
# The rank is what keeps a status from moving backwards.
PROGRESS_RANKS = {"scheduled": 0, "queued": 1, "sending": 2, "sent": 3}
FINAL_RANK = 10
FINAL_STATUSES = (
    "delivered",
    "sending_failed",
    "delivery_failed",
    "delivery_unconfirmed",
    "expired",
    "cancelled",
)
# What a user means by "failed": the text did not get through. An unconfirmed
# message may well have arrived, and a cancelled one was stopped on purpose.
FAILURE_STATUSES = ("sending_failed", "delivery_failed", "expired")
KNOWN_STATUSES = (*PROGRESS_RANKS, *FINAL_STATUSES)

MAX_ID_LENGTH = 255
MAX_TEXT_FIELD = 2000


class MalformedEvent(ValueError):
    """A signed body that is not a well-formed Telnyx event."""


@dataclass(frozen=True)
class ErrorInfo:
    """Telnyx's reason for a failure: a code such as "40008", a title, a detail."""

    code: str
    title: str | None
    detail: str | None


@dataclass(frozen=True)
class Event:
    """A webhook event; `message` is None for event types this service ignores."""

    event_id: str
    event_type: str
    message: "MessageUpdate | None"


@dataclass(frozen=True)
class MessageUpdate:
    """What one status event or send answer says about a message."""

    message_id: str
    status: str
    rank: int
    occurred_at: str
    from_number: str | None = None
    to_number: str | None = None
    direction: str | None = None
    text: str | None = None
    parts: int | None = None
    encoding: str | None = None
    cost_amount: str | None = None
    cost_currency: str | None = None
    sent_at: str | None = None
    completed_at: str | None = None
    error: ErrorInfo | None = None

    @property
    def final(self):
        return self.rank >= FINAL_RANK


def rank_of(status, final=False):
    """Return the order of a status; unknown names before `sent` unless final."""
    if final or status in FINAL_STATUSES:
        return FINAL_RANK
    return PROGRESS_RANKS.get(status, PROGRESS_RANKS["queued"])


def utc_now():
    """Return the current time as stored and shown: ISO-8601 UTC with a Z."""
    return iso_utc(datetime.now(UTC))


def iso_utc(moment):
    """Format an aware datetime as ISO-8601 UTC with milliseconds and a Z."""
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text[:-6] + "Z"


def parse_event(raw_body):
    """Parse a verified webhook body into an Event, or raise MalformedEvent."""
    try:
        document = json.loads(raw_body)
    except (ValueError, RecursionError) as error:
        raise MalformedEvent("The body is not valid JSON.") from error

    data = _field(document, "data", dict, "body")
    event_id = _identifier(data, "id", "data")
    event_type = _identifier(data, "event_type", "data")
    if event_type not in HANDLED_EVENTS:
        return Event(event_id, event_type, None)

    payload = _field(data, "payload", dict, "data")
    return Event(event_id, event_type, _update_from(data, payload, event_type))


def update_from_send(message, from_number, to, text):
    """Describe a message Telnyx accepted, from its answer and from our request."""
    recipients = message.get("to")
    first = recipients[0] if isinstance(recipients, list) and recipients else {}
    status = first.get("status") if isinstance(first, dict) else None
    if not isinstance(status, str) or not status.strip():
        status = "queued"
    status = status[:64]
    try:
        update = _message_update(message, status, rank_of(status), utc_now())
    except MalformedEvent:
        # Telnyx took the message; an odd field in its answer must not lose it.
        update = MessageUpdate(message["id"], status, rank_of(status), utc_now())
    return replace(
        update, direction="outbound", from_number=from_number, to_number=to, text=text
    )


def update_from_record(message):
    """Describe what Telnyx's current record of a message says, or raise
    MalformedEvent. Only a status Telnyx calls final counts as final here: no
    event vouches for it."""
    if not isinstance(message, dict):
        raise MalformedEvent("The message record is not an object.")
    status = _field(_recipient(message), "status", str, "message.to[0]")
    moment = _timestamp(message, "completed_at", "message")
    moment = moment or _timestamp(message, "sent_at", "message") or utc_now()
    return _message_update(message, status, rank_of(status), moment)


def _update_from(data, payload, event_type):
    occurred_at = _timestamp(data, "occurred_at", "data", required=True)
    recipient = _recipient(payload)
    if event_type == FINALIZED:
        # Final whatever the name: Telnyx may add final statuses we do not know.
        status = _field(recipient, "status", str, "payload.to[0]")
        rank = FINAL_RANK
    else:
        status, rank = SENT, PROGRESS_RANKS[SENT]
    return _message_update(payload, status, rank, occurred_at)


def _message_update(message, status, rank, occurred_at):
    if not _printable(status) or len(status) > 64:
        raise MalformedEvent("payload.to[0].status must be a short, non-empty string.")
    cost = _optional(message, "cost", dict, "payload") or {}
    sender = _optional(message, "from", dict, "payload") or {}
    return MessageUpdate(
        message_id=_identifier(message, "id", "payload"),
        status=status,
        rank=rank,
        occurred_at=occurred_at,
        from_number=_optional(sender, "phone_number", str, "payload.from"),
        to_number=_optional(_recipient(message), "phone_number", str, "payload.to[0]"),
        direction=_optional(message, "direction", str, "payload"),
        text=_optional(message, "text", str, "payload", limit=None),
        parts=_count(message.get("parts")),
        encoding=_optional(message, "encoding", str, "payload"),
        cost_amount=_amount(cost.get("amount")),
        cost_currency=_optional(cost, "currency", str, "payload.cost"),
        sent_at=_timestamp(message, "sent_at", "payload"),
        completed_at=_timestamp(message, "completed_at", "payload"),
        error=_first_error(message),
    )


def _recipient(message):
    recipients = _field(message, "to", list, "payload")
    if not recipients or not isinstance(recipients[0], dict):
        raise MalformedEvent("payload.to must list at least one recipient object.")
    return recipients[0]


def _first_error(message):
    errors = _optional(message, "errors", list, "payload") or []
    if not errors:
        return None
    first = errors[0]
    if not isinstance(first, dict) or first.get("code") in (None, ""):
        raise MalformedEvent("payload.errors[0] must be an object with a code.")
    code = first["code"]
    if isinstance(code, bool) or not isinstance(code, (str, int)):
        raise MalformedEvent("payload.errors[0].code must be a string.")
    if not _printable(str(code)):
        raise MalformedEvent("payload.errors[0].code must be printable text.")
    return ErrorInfo(
        code=_clip(str(code), 64),
        title=_optional(first, "title", str, "payload.errors[0]"),
        detail=_optional(first, "detail", str, "payload.errors[0]"),
    )


def _field(container, name, kind, where):
    value = container.get(name) if isinstance(container, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        label = {dict: "an object", list: "a list", str: "a string"}[kind]
        raise MalformedEvent(f"{where}.{name} must be {label}.")
    if kind is str:
        _encodable(value, f"{where}.{name}")
    return value


def _optional(container, name, kind, where, limit=MAX_TEXT_FIELD):
    value = container.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MalformedEvent(f"{where}.{name} has the wrong type.")
    if kind is str:
        _encodable(value, f"{where}.{name}")
        return value if limit is None else _clip(value, limit)
    return value


def _identifier(container, name, where):
    value = _field(container, name, str, where)
    if not _printable(value) or len(value) > MAX_ID_LENGTH:
        raise MalformedEvent(f"{where}.{name} must be a non-empty id.")
    return value


def _printable(text):
    # Ids and statuses reach the log; a control character could forge a line.
    return bool(text.strip()) and text.isprintable()


def _count(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise MalformedEvent("payload.parts must be a small whole number.")
    return value


def _amount(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise MalformedEvent("payload.cost.amount must be a decimal string.")
    if isinstance(value, float) and not math.isfinite(value):
        raise MalformedEvent("payload.cost.amount must be a finite number.")
    _encodable(str(value), "payload.cost.amount")
    return _clip(str(value), 32)


def _timestamp(container, name, where, required=False):
    value = container.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise MalformedEvent(f"{where}.{name} must be an ISO-8601 timestamp.")
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return iso_utc(moment)
    except (ValueError, OverflowError) as error:
        raise MalformedEvent(f"{where}.{name} is not an ISO-8601 timestamp.") from error


def _encodable(text, where):
    # JSON may carry lone surrogates ("\\ud800"), which no database can store.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise MalformedEvent(f"{where} is not valid Unicode text.") from error


def _clip(text, limit):
    return text[:limit]
