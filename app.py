"""SMS delivery receipts: send through Telnyx, take its webhooks, say what happened."""

import contextlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

from dotenv import load_dotenv
from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    jsonify,
    render_template,
    request,
)
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

import access
import db
import error_codes
import idempotency
import metrics
from config import E164, load_settings
from messaging import (
    FAILURE_STATUSES,
    FINAL_RANK,
    KNOWN_STATUSES,
    MalformedEvent,
    iso_utc,
    parse_event,
    update_from_send,
)
from reconcile import reconcile_command
from signature import SignatureError, WebhookVerifier
from telnyx_client import (
    TelnyxBusy,
    TelnyxClient,
    TelnyxError,
    TelnyxTimeout,
    TelnyxUnreachable,
)

log = logging.getLogger("receipts")

MAX_BODY_BYTES = 1024 * 1024
DEFAULT_PAGE = 100
MAX_PAGE = 1000
STATS_WINDOW = timedelta(days=7)
RECENT_ON_DASHBOARD = 25
STATUS_FILTERS = (*KNOWN_STATUSES, "failed")

api = Blueprint("api", __name__)


class ApiError(Exception):
    """An answer other than success: rendered as JSON `{"error": ...}`."""

    def __init__(self, status, message, headers=None, surely_unsent=False, **extra):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        # For a send: nothing reached Telnyx, whatever the status says.
        self.surely_unsent = surely_unsent
        self.extra = extra


@dataclass(frozen=True)
class Services:
    """What the routes work with, built once per app."""

    settings: object
    database: object
    telnyx: TelnyxClient
    verifier: WebhookVerifier


def create_app(config=None):
    """Build the app from the environment, then `config`; `.env` when none is given."""
    if config is None:
        load_dotenv(Path.cwd() / ".env")
    settings = load_settings({**os.environ, **(config or {})})
    _configure_logging()

    app = Flask(__name__, static_folder=None)
    # One byte over the limit is read, so that a chunked body that does not
    # say its length can still be told apart from one of exactly 1 MiB.
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES + 1
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.url_map.merge_slashes = False
    app.json.sort_keys = False

    database = db.open_database(settings)
    database.migrate()
    app.extensions["receipts"] = Services(
        settings=settings,
        database=database,
        telnyx=TelnyxClient(
            settings.api_key, settings.base_url, settings.telnyx_timeout
        ),
        verifier=WebhookVerifier(settings.public_keys, settings.webhook_tolerance),
    )

    app.register_blueprint(api)
    app.cli.add_command(reconcile_command)
    app.before_request(_guard)
    app.after_request(_security_headers)
    app.register_error_handler(access.AccessDenied, _render_access_denied)
    app.register_error_handler(ApiError, _render_api_error)
    app.register_error_handler(HTTPException, _render_http_error)
    app.register_error_handler(db.StorageError, _render_storage_error)
    app.register_error_handler(Exception, _render_unexpected_error)
    _warm_up(app)
    if not settings.api_token:
        log.warning(
            "API_TOKEN is not set: sending and reading are open to this machine "
            "only. Set it before exposing the service."
        )
    log.info("ready: database %s", database.describe())
    return app


# The routes anyone may call: the webhook proves itself with its signature.
OPEN_ENDPOINTS = {"api.receive_webhook", "api.openapi", "api.health"}


def _guard():
    if request.endpoint is None or request.endpoint in OPEN_ENDPOINTS:
        return
    # A browser asks for a password only when challenged with Basic.
    browser = request.endpoint == "api.dashboard"
    access.check(request, _services().settings.api_token, browser=browser)


def _security_headers(response):
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _render_access_denied(error):
    response = jsonify(error=error.message)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = error.challenge
    return response, error.status


def _warm_up(app):
    """Take the hot paths once, so the first request is as fast as the rest."""
    services = app.extensions["receipts"]
    db.warm_up(services.database)
    metrics.prepare()
    for path in ("/webhooks/message", "/messages"):
        with app.test_request_context(path):  # builds the URL matcher
            jsonify(status="warm")
    # A well-formed signature that does not match: exercises the verifier.
    signature = {"telnyx-timestamp": "1", "telnyx-signature-ed25519": "A" * 86 + "=="}
    with contextlib.suppress(SignatureError):
        services.verifier.verify(signature, b"{}", now=1)


def _services():
    return current_app.extensions["receipts"]


# Sending


@api.post("/sms/send")
def send_sms():
    to, text = _read_send_request()
    key = _idempotency_key()
    if key is None:
        return _send(to, text)

    services = _services()
    try:
        return idempotency.once(
            services.database,
            key,
            idempotency.fingerprint(to, text),
            lambda: _send_answer(to, text),
            wait_seconds=services.settings.telnyx_timeout + 5,
        )
    except idempotency.KeyConflict as error:
        raise ApiError(error.status, error.message) from error


def _idempotency_key():
    key = request.headers.get("Idempotency-Key")
    if key is not None and not idempotency.KEY_FORMAT.fullmatch(key):
        raise ApiError(
            400,
            "Idempotency-Key must be 1 to 255 letters, digits, '_', ':' or '-'.",
        )
    return key


def _send_answer(to, text):
    """Send, and say whether the text may have gone, whatever the answer."""
    try:
        response = _send(to, text)
    except ApiError as error:
        response = _render_api_error(error)
        if error.surely_unsent:
            return response, False
    # A 2xx or a 5xx may have sent it; a 4xx is Telnyx refusing it.
    return response, not 400 <= response.status_code < 500


def _send(to, text):
    try:
        response = _deliver(to, text)
    except ApiError as error:
        metrics.count_send(error.status)
        raise
    metrics.count_send(response.status_code)
    return response


def _deliver(to, text):
    services = _services()
    settings = services.settings

    try:
        message = services.telnyx.send_message(
            settings.phone_number,
            to,
            text,
            profile_id=settings.messaging_profile_id,
            webhook_url=settings.webhook_url,
        )
    except (TelnyxError, TelnyxTimeout, TelnyxUnreachable) as error:
        raise _send_failure(error) from error

    try:
        update = update_from_send(message, settings.phone_number, to, text)
        db.record_sent(services.database, update)
    except Exception as error:
        # Whatever went wrong, the text is on its way: say so, so that nobody
        # sends it again. Its status webhooks will create the row later.
        log.exception("send accepted but not stored: message %s", message["id"])
        raise ApiError(
            500,
            "Telnyx accepted the message but it could not be stored; do not send "
            "it again. Its status webhooks will record it.",
            message_id=message["id"],
        ) from error
    log.info("send accepted: message %s, status %s", update.message_id, update.status)
    return jsonify(
        message_id=update.message_id,
        status=update.status,
        **{"from": settings.phone_number, "to": to},
    )


def _read_send_request():
    try:
        body = json.loads(_raw_body())
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise ApiError(400, 'The body must be a JSON object: {"to", "message"}.')

    unknown = sorted(set(body) - {"to", "message"})
    if unknown:
        raise ApiError(400, f"Unknown fields: {', '.join(unknown)}.")
    to, text = body.get("to"), body.get("message")
    if not isinstance(to, str) or not E164.fullmatch(to):
        raise ApiError(400, "'to' must be an E.164 phone number, e.g. +12025550147.")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "'message' must be a non-empty string.")
    if not _is_unicode(text):
        raise ApiError(400, "'message' is not valid Unicode text.")
    return to, text


def _is_unicode(text):
    # JSON can carry lone surrogates ("\ud800"), which no SMS can hold.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _raw_body():
    """Return the request body, refusing one over the limit however it came."""
    try:
        body = request.get_data(cache=True)
    except HTTPException:
        raise
    except Exception as error:
        # The server could not decode what the client sent (broken chunked
        # encoding, say); each server has its own exception for that.
        raise ApiError(400, "The request body could not be read.") from error
    if len(body) > MAX_BODY_BYTES:
        raise RequestEntityTooLarge()
    return body


def _send_failure(error):
    """Choose our answer to a failed send; every one says whether it may have gone."""
    if isinstance(error, TelnyxTimeout):
        log.warning("send outcome unknown: Telnyx did not answer in time")
        return ApiError(
            504,
            "Telnyx did not answer in time. The text may still be sent: check "
            "GET /messages before sending it again.",
        )
    if isinstance(error, TelnyxBusy):
        log.warning("send failed: no free connection to Telnyx in time")
        return ApiError(
            503,
            "The service had no free connection to Telnyx in time; the text was "
            "not sent. Try again.",
            surely_unsent=True,
        )
    if isinstance(error, TelnyxUnreachable):
        log.warning("send failed: Telnyx unreachable (%s)", error)
        return ApiError(
            503,
            "Telnyx could not be reached or closed the connection. The text was "
            "probably not sent: check GET /messages before sending it again.",
        )

    verdict = "refused" if 400 <= error.status < 500 else "outcome unknown"
    log.warning(
        "send %s: Telnyx HTTP %s, code %s",
        verdict,
        error.status,
        error.code or "none",
    )
    details = {"status": error.status, "code": error.code, "title": error.title}
    details["detail"] = error.detail
    if error.status == 401:
        return ApiError(
            401,
            "Telnyx refused the API key: check TELNYX_API_KEY.",
            telnyx_error=details,
        )
    if error.status == 429:
        headers = {"Retry-After": error.retry_after} if error.retry_after else {}
        return ApiError(
            429,
            "Telnyx is limiting this account's request rate; try again later.",
            headers=headers,
            telnyx_error=details,
        )
    if 400 <= error.status < 500:
        return ApiError(
            422 if error.status == 422 else 400,
            f"Telnyx refused the message: {error.title or 'no reason given'}.",
            telnyx_error=details,
        )
    if error.status < 300:
        return ApiError(
            502,
            "Telnyx answered without a readable message id. The text may have "
            "been sent: check GET /messages before sending it again.",
            telnyx_error=details,
        )
    return ApiError(
        502,
        "Telnyx failed to take the message. It was probably not sent: check "
        "GET /messages before sending it again.",
        telnyx_error=details,
    )


# Webhooks


@api.post("/webhooks/message")
def receive_webhook():
    with metrics.WEBHOOK_SECONDS.time():
        return _handle_webhook()


def _handle_webhook():
    services = _services()
    body = _raw_body()

    try:
        services.verifier.verify(request.headers, body)
    except SignatureError as error:
        log.warning("webhook rejected: %s", error.reason)
        metrics.count_webhook("rejected", error.reason)
        raise ApiError(401, f"Webhook signature rejected: {error}") from error
    try:
        event = parse_event(body)
    except MalformedEvent as error:
        log.warning("webhook malformed: %s", error)
        metrics.count_webhook("rejected", "malformed")
        raise ApiError(400, f"Not a well-formed Telnyx event: {error}") from error

    if event.message is None:
        log.info("webhook ignored: event %s, type %s", event.event_id, event.event_type)
        metrics.count_webhook("ignored")
        return _webhook_answer("ignored")

    update = event.message
    database = services.database
    applied = db.apply_event(database, event.event_id, event.event_type, update)
    outcome = "processed" if applied else "already_processed"
    log.info(
        "webhook %s: event %s, %s, message %s, status %s",
        outcome,
        event.event_id,
        event.event_type,
        update.message_id,
        update.status,
    )
    metrics.count_webhook("processed" if applied else "duplicate")
    return _webhook_answer(outcome)


def _webhook_answer(outcome):
    # The three answers never change; serialising them once saves the JSON
    # machinery on the route Telnyx waits on.
    return Response(_WEBHOOK_ANSWERS[outcome], mimetype="application/json")


_WEBHOOK_ANSWERS = {
    outcome: json.dumps({"status": outcome}).encode()
    for outcome in ("processed", "already_processed", "ignored")
}


# Insights


@api.get("/stats")
def delivery_stats():
    unknown = sorted(set(request.args) - {"since", "until"})
    if unknown:
        raise ApiError(400, f"Unknown query parameters: {', '.join(unknown)}.")
    until = _moment("until") or _now_included()
    since = _moment("since") or until - STATS_WINDOW
    if since >= until:
        raise ApiError(400, "'since' must be before 'until'.")

    return jsonify(_stats_document(since, until))


def _stats_document(since, until):
    found = db.delivery_stats(
        _services().database, iso_utc(since), iso_utc(until), FAILURE_STATUSES
    )
    by_status = {}
    for status, _, n in found["by_status"]:
        by_status[status] = by_status.get(status, 0) + n
    final = sum(n for _, rank, n in found["by_status"] if rank >= FINAL_RANK)
    delivered = by_status.get("delivered", 0)
    return {
        "since": iso_utc(since),
        "until": iso_utc(until),
        "messages": sum(by_status.values()),
        "by_status": by_status,
        "final": final,
        "delivered": delivered,
        "delivery_rate": round(delivered / final, 4) if final else None,
        "failures": [_failure_json(*failure) for failure in found["failures"]],
        "time_to_final": {
            "measured": found["measured"],
            "p50_seconds": _rounded(found["p50"]),
            "p95_seconds": _rounded(found["p95"]),
        },
        "daily": [
            {"date": day, "sent": sent, "delivered": ok, "failed": failed}
            for day, sent, ok, failed in found["daily"]
        ],
    }


# The dashboard


@api.get("/")
def dashboard():
    unknown = sorted(set(request.args) - {"status"})
    if unknown:
        raise ApiError(400, f"Unknown query parameters: {', '.join(unknown)}.")
    status = _query_value("status") or None
    statuses = _status_filter(status)

    until = _now_included()
    stats = _stats_document(until - STATS_WINDOW, until)
    recent = db.list_messages(_services().database, statuses, None, RECENT_ON_DASHBOARD)
    largest_day = max([day["sent"] for day in stats["daily"]] or [0])
    return render_template(
        "dashboard.html",
        stats=stats,
        recent=[_message_json(row) for row in recent],
        status=status,
        statuses=STATUS_FILTERS,
        largest_status=max(stats["by_status"].values(), default=0),
        largest_day=largest_day,
    )


def _now_included():
    # The window leaves its end out, and times are kept to the millisecond:
    # a message created this very millisecond belongs in "up to now".
    return datetime.now(UTC) + timedelta(milliseconds=1)


def _moment(name):
    value = _query_value(name)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise ApiError(
            400, f"'{name}' must be an ISO-8601 time, such as 2026-12-01T00:00:00Z."
        ) from error
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if not 1970 <= moment.year <= 9998:
        raise ApiError(400, f"'{name}' must be a time between 1970 and 9998.")
    return moment


def _failure_json(code, title, count):
    known = error_codes.describe(code) if code else None
    return {
        "code": code,
        "title": known.title if known else (title or "No error code given"),
        "retry": known.retry if known else None,
        "explanation": known.explanation if known else None,
        "count": count,
    }


def _rounded(seconds):
    return None if seconds is None else round(seconds, 3)


# Operations


@api.get("/healthz")
def health():
    try:
        db.check(_services().database)
    except db.StorageError:
        log.error("health check: the database does not answer")
        return jsonify(status="unavailable", database="down"), 503
    return jsonify(status="ok", database="up")


@api.get("/metrics")
def prometheus_metrics():
    counts = db.count_by_status(_services().database)
    body, content_type = metrics.exposition(counts)
    return Response(body, content_type=content_type)


@api.get("/openapi.json")
def openapi():
    return Response(_OPENAPI, mimetype="application/json")


_OPENAPI = (Path(__file__).resolve().parent / "openapi.json").read_bytes()


# Queries


@api.get("/messages/<message_id>")
def show_message(message_id):
    found = db.get_message(_services().database, message_id)
    if found is None:
        raise ApiError(404, f"No message with id {message_id!r} is stored.")

    row, receipt, events = found
    shown = _message_json(row)
    if receipt is not None:
        shown["delivery_receipt"] = {
            "status": receipt["status"],
            "error": _error_json(receipt),
            "event_id": receipt["event_id"],
            "occurred_at": receipt["occurred_at"],
            "recorded_at": receipt["recorded_at"],
        }
    shown["events"] = [
        {
            "event_id": event["event_id"],
            "type": event["event_type"],
            "status": event["status"],
            "occurred_at": event["occurred_at"],
        }
        for event in events
    ]
    return jsonify(shown)


@api.get("/messages")
def list_messages():
    unknown = sorted(set(request.args) - {"status", "limit", "cursor"})
    if unknown:
        raise ApiError(400, f"Unknown query parameters: {', '.join(unknown)}.")
    statuses = _status_filter(_query_value("status"))
    limit = _whole_number("limit", DEFAULT_PAGE, 1, MAX_PAGE)
    cursor = _whole_number("cursor", None, 1, 2**62)

    # One row more than asked tells whether a next page exists.
    rows = db.list_messages(_services().database, statuses, cursor, limit + 1)
    response = jsonify([_message_json(row) for row in rows[:limit]])
    if len(rows) > limit:
        query = {key: value for key, value in request.args.items() if key != "cursor"}
        query["cursor"] = rows[limit - 1]["seq"]
        response.headers["Link"] = f'<{request.path}?{urlencode(query)}>; rel="next"'
    return response


def _query_value(name):
    values = request.args.getlist(name)
    if len(values) > 1:
        raise ApiError(400, f"'{name}' may be given only once.")
    return values[0] if values else None


def _status_filter(value):
    if value is None:
        return None
    if value == "failed":
        return FAILURE_STATUSES
    if value not in KNOWN_STATUSES:
        raise ApiError(
            400,
            f"Unknown status {value!r}; use one of: {', '.join(STATUS_FILTERS)}.",
            valid_statuses=list(STATUS_FILTERS),
        )
    return (value,)


def _whole_number(name, default, low, high):
    value = _query_value(name)
    if value is None:
        return default
    valid = value.isascii() and value.isdigit() and len(value) <= 19
    if not valid or not low <= int(value) <= high:
        if name == "cursor":
            raise ApiError(400, "'cursor' must come from a Link header of this API.")
        raise ApiError(400, f"'{name}' must be a whole number from {low} to {high}.")
    return int(value)


def _message_json(row):
    cost = None
    if row["cost_amount"] is not None:
        cost = {"amount": row["cost_amount"], "currency": row["cost_currency"]}
    return {
        "message_id": row["message_id"],
        "direction": row["direction"],
        "from": row["from_number"],
        "to": row["to_number"],
        "text": row["text"],
        "status": row["status"],
        "final": row["status_rank"] >= FINAL_RANK,
        "error": _error_json(row),
        "parts": row["parts"],
        "encoding": row["encoding"],
        "cost": cost,
        "sent_at": row["sent_at"],
        "completed_at": row["completed_at"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def _error_json(row):
    if row["error_code"] is None:
        return None
    return {
        "code": row["error_code"],
        "title": row["error_title"],
        "detail": row["error_detail"],
    }


# Errors: every answer that is not a success is JSON {"error": ...}.


def _render_api_error(error):
    response = jsonify(error=error.message, **error.extra)
    response.headers.update(error.headers)
    response.status_code = error.status
    return response


def _render_http_error(error):
    response = jsonify(error=error.description or error.name)
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response, error.code


def _render_storage_error(error):
    # Telnyx retries anything but a 2xx, so a receipt that could not be stored
    # now is delivered again later instead of being lost.
    log.error("storage failed: %s", error)
    return jsonify(error="The database is unavailable; try again shortly."), 503


def _render_unexpected_error(error):
    log.exception("unexpected error on %s %s", request.method, request.path)
    return jsonify(error="Internal error; the service logged the details."), 500


def _configure_logging():
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    logging.getLogger("yoyo").setLevel(logging.WARNING)


if __name__ == "__main__":
    # Run the command line from the `app` module, not from a second copy of
    # this file named __main__, so that every part shares one set of classes.
    from cli import main

    sys.exit(main())
