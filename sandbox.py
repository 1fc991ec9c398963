"""The sandbox: the service and a simulated Telnyx in one process, no account needed.

The service runs exactly as in production, webhook verification included; the
simulator holds the key pair and signs its events as Telnyx would.
"""

import os
import sys

import requests
from flask import Blueprint, current_app, jsonify, request

from app import ApiError, create_app
from messaging import HANDLED_EVENTS
from telnyx_simulator import OUTCOMES, REFUSALS, TelnyxSimulator

SANDBOX_API_KEY = "KEY_SANDBOX_NOT_A_REAL_KEY"
SANDBOX_NUMBER = "+12025550100"
SANDBOX_DATABASE_URL = "sqlite:///sandbox.db"

sandbox_api = Blueprint("sandbox", __name__)


def create_sandbox_app(environ=None):
    """Start a Telnyx simulator and build the service wired to it."""
    environ = os.environ if environ is None else environ
    host = environ.get("HOST") or "127.0.0.1"
    port = environ.get("PORT") or "5000"

    webhook_url = f"{_local_url(host, port)}/webhooks/message"
    # The "slow" destination must outlast the service's own Telnyx timeout.
    timeout = environ.get("TELNYX_TIMEOUT_SECONDS") or "10"
    slow = int(timeout) + 1 if timeout.isdigit() else 11
    simulator = TelnyxSimulator(
        api_key=SANDBOX_API_KEY,
        phone_number=SANDBOX_NUMBER,
        webhook_url=webhook_url,
        slow_seconds=slow,
    )
    base_url = simulator.start()
    # Deliberately no `.env`: real credentials there must never meet the sandbox.
    app = create_app(
        {
            "TELNYX_API_KEY": SANDBOX_API_KEY,
            "TELNYX_PUBLIC_KEY": simulator.public_key,
            "TELNYX_PHONE_NUMBER": SANDBOX_NUMBER,
            "TELNYX_BASE_URL": base_url,
            "TELNYX_MESSAGING_PROFILE_ID": "",
            "TELNYX_WEBHOOK_URL": webhook_url,
            "DATABASE_URL": environ.get("DATABASE_URL") or SANDBOX_DATABASE_URL,
        }
    )
    app.register_blueprint(sandbox_api)
    app.extensions["sandbox"] = simulator
    return app


def banner(app):
    """The start-up text that says plainly what the sandbox is."""
    settings = app.extensions["receipts"].settings
    lines = [
        "SANDBOX MODE: Telnyx is simulated on this machine.",
        "No SMS leaves it and nothing is charged.",
        f"  service:    {_local_url(settings.host, settings.port)}",
        f"  Telnyx:     {settings.base_url}",
        f"  database:   {app.extensions['receipts'].database.describe()}",
        f"  sending as: {_masked(SANDBOX_NUMBER)}",
        "  outcomes by the last 7 digits of 'to':",
    ]
    lines += [f"    {digits}  {label}" for digits, label in outcome_table()]
    lines.append("    other    delivered")
    width = max(len(line) for line in lines)
    rule = "=" * width
    return "\n".join([rule, *lines, rule])


def outcome_table():
    """Pairs of destination digits and what the simulator does with them."""
    table = []
    for digits, outcome in sorted({**OUTCOMES, "5550105": None}.items()):
        if outcome is None:
            code = REFUSALS[digits][1]
            table.append((digits, f"refused at send time, error {code}"))
            continue
        label = outcome.status
        if outcome.error:
            label += f", error {outcome.error[0]} {outcome.error[1]}"
        if not outcome.sent_event:
            label += ", no message.sent"
        if outcome.scrambled:
            label += ", events duplicated and out of order"
        table.append((digits, label))
    return table


@sandbox_api.get("/sandbox")
def describe():
    settings = current_app.extensions["receipts"].settings
    outcomes = dict(outcome_table())
    return jsonify(sandbox=True, telnyx_base_url=settings.base_url, outcomes=outcomes)


@sandbox_api.post("/sandbox/events")
def trigger_event():
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "The body must be a JSON object.")
    message_id = _text(body, "message_id", required=True)
    event_type = _text(body, "event_type") or "message.finalized"
    status = _text(body, "status") or _default_status(event_type)
    code = _text(body, "error_code")
    error = (code, _text(body, "error_title") or f"Error {code}") if code else None
    event_id = _text(body, "event_id")

    simulator = current_app.extensions["sandbox"]
    event_id, answer = simulator.trigger(
        message_id, event_type, status, error, event_id=event_id
    )
    status_code, reply = answer if answer else (None, None)
    return jsonify(event_id=event_id, webhook_status=status_code, webhook_answer=reply)


def _default_status(event_type):
    return "sent" if event_type == HANDLED_EVENTS[0] else "delivered"


def _text(body, name, required=False):
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        raise ApiError(400, f"'{name}' must be a non-empty string.")
    return value


def _masked(number):
    # Phone numbers stay out of logs, the sandbox's own included.
    return number[:2] + "*" * (len(number) - 4) + number[-2:]


def _local_url(host, port):
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a bind address, not a bind
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def trigger(args):
    """Send one signed event to a running sandbox service; return an exit code."""
    url = args.url.rstrip("/")
    token = os.environ.get("API_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        described = requests.get(f"{url}/sandbox", headers=headers, timeout=5)
        is_sandbox = described.status_code == 200 and described.json().get("sandbox")
    except (requests.RequestException, ValueError, AttributeError):
        print(f"No service answered at {url}.", file=sys.stderr)
        return 2
    if described.status_code in (401, 403):
        print(f"The service refused: {described.json().get('error')}", file=sys.stderr)
        return 2
    if not is_sandbox:
        print(
            f"Refusing: the service at {url} is not in sandbox mode. The trigger "
            "only talks to `python app.py --sandbox`.",
            file=sys.stderr,
        )
        return 2

    request_body = {"message_id": args.message_id, "event_type": args.event}
    for name in ("status", "error_code", "error_title", "event_id"):
        if getattr(args, name):
            request_body[name] = getattr(args, name)
    answer = requests.post(
        f"{url}/sandbox/events", json=request_body, headers=headers, timeout=10
    )
    result = answer.json()
    if answer.status_code != 200:
        print(result.get("error"), file=sys.stderr)
        return 2
    print(
        f"event {result['event_id']} ({args.event}) answered "
        f"{result['webhook_status']}: {result['webhook_answer']}"
    )
    return 0 if result["webhook_status"] == 200 else 1
