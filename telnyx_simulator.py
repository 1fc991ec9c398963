"""A stand-in for Telnyx's messaging API, served over real HTTP on loopback.

It answers `POST /v2/messages` and `GET /v2/messages/{id}` with Telnyx's shapes
and error bodies, then plays each accepted message's life: it posts
`message.sent` and `message.finalized` to the message's webhook URL, signed
with Ed25519 as Telnyx signs, and retried as Telnyx retries. The destination
number picks what happens, so an outcome or a fault is chosen per request,
through the service, with nothing but a phone number.
"""

import base64
import copy
import json
import logging
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import requests
from flask import Flask, Response, request
from nacl.signing import SigningKey
from werkzeug.serving import make_server

from messaging import iso_utc
from signature import sign

log = logging.getLogger(__name__)

# Refusals at send time, by the last seven digits of `to`: HTTP status, then
# Telnyx's error code, title and detail.
REFUSALS = {
    "5550105": (
        400,
        "40300",
        "Blocked due to STOP message",
        "The recipient has opted out of messages from this number.",
    ),
    "5550401": (
        401,
        "10009",
        "Authentication failed",
        "The API key could not be understood or is not valid.",
    ),
    "5550422": (
        422,
        "10015",
        "Invalid value",
        "The value of 'to' is not valid for this profile.",
    ),
    "5550429": (
        429,
        "10011",
        "Too many requests",
        "The account has exceeded its allowed request rate.",
    ),
    "5550500": (500, "10007", "Unexpected error", "An unexpected error occurred."),
}
# Answers that are not Telnyx errors at all.
MALFORMED, DROPPED, SLOW, TRICKLE = "5550502", "5550503", "5550504", "5550505"


@dataclass(frozen=True)
class Outcome:
    """What happens to an accepted message after the send answer."""

    status: str
    error: tuple | None = None
    sent_event: bool = True
    scrambled: bool = False
    line_type: str = "Wireless"


# Final outcomes, by the last seven digits of `to`; anything else is delivered.
OUTCOMES = {
    "5550101": Outcome(
        "delivery_failed",
        ("40008", "Undeliverable", "The destination carrier did not accept it."),
    ),
    "5550102": Outcome(
        "sending_failed",
        ("40001", "Not routable", "The destination number cannot receive SMS."),
        sent_event=False,
        line_type="Wireline",
    ),
    "5550103": Outcome("delivery_unconfirmed"),
    "5550104": Outcome(
        "expired",
        (
            "40005",
            "Message expired during transmission",
            "The carrier could not deliver it before it expired.",
        ),
    ),
    "5550106": Outcome("delivered", scrambled=True),
}
DELIVERED = Outcome("delivered")

PROFILE_ID = "40017f3c-8b2a-4d6e-a1c9-5e0f7b3d2a18"
ORGANIZATION_ID = "2c6b9e41-7d3a-4f58-b0e2-9a1c4d7f6e53"
RETRY_AFTER_SECONDS = "7"

_GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = set("^{}\\[~]|€\f")


def encoding_and_parts(text):
    """Return Telnyx's encoding name and the number of parts for `text`."""
    if all(char in _GSM7 or char in _GSM7_EXTENDED for char in text):
        units = sum(2 if char in _GSM7_EXTENDED else 1 for char in text)
        single, split, name = 160, 153, "GSM-7"
    else:
        # UCS-2 counts UTF-16 code units: an emoji takes two.
        units = len(text.encode("utf-16-le")) // 2
        single, split, name = 70, 67, "UCS-2"
    if units <= single:
        return name, 1
    return name, -(-units // split)


def telnyx_errors(code, title, detail, pointer=None):
    """Return an error body in Telnyx's format."""
    error = {"code": code, "title": title, "detail": detail}
    if pointer:
        error["source"] = {"pointer": pointer}
    return {"errors": [error]}


class TelnyxSimulator:
    """Telnyx's messaging endpoints and webhooks, chosen by destination number."""

    def __init__(
        self,
        api_key=None,
        phone_number=None,
        signing_key=None,
        webhook_url=None,
        slow_seconds=3.0,
        sent_delay=0.6,
        final_delay=1.2,
        retry_delays=(1.0, 2.0),
    ):
        self.api_key = api_key
        self.phone_number = phone_number
        self.signing_key = signing_key or SigningKey.generate()
        self.webhook_url = webhook_url
        self.slow_seconds = slow_seconds
        self.sent_delay = sent_delay
        self.final_delay = final_delay
        self.retry_delays = retry_delays
        # How many of the next retrievals answer 429, and what they ask to wait.
        self.rate_limited_retrievals = 0
        self.retry_after = RETRY_AFTER_SECONDS
        self.messages = {}
        self.requests = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._server = None
        self._http = requests.Session()
        self.app = self._build_app()

    @property
    def public_key(self):
        """The base64 public key a receiver verifies this simulator's webhooks with."""
        return base64.b64encode(bytes(self.signing_key.verify_key)).decode()

    @property
    def send_requests(self):
        """The bodies of every `POST /v2/messages` received, in order."""
        with self._lock:
            return [body for method, body in self.requests if method == "POST"]

    def reset(self):
        """Forget every message and request."""
        with self._lock:
            self.messages.clear()
            self.requests.clear()

    def start(self, host="127.0.0.1", port=0):
        """Serve on a background thread; return the base URL, `/v2` included."""
        self._server = make_server(host, port, self.app, threaded=True)
        thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        thread.start()
        return f"http://{host}:{self._server.server_port}/v2"

    def stop(self):
        """Stop serving, and stop playing the messages' lives."""
        self._stopped.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def trigger(
        self, message_id, event_type, status, error=None, url=None, event_id=None
    ):
        """Deliver one event for a message once; return its id and the answer.

        Giving the id of an event delivered before sends it again, as Telnyx's
        retries do."""
        with self._lock:
            message = copy.deepcopy(self.messages.get(message_id))
        if message is None:
            message = _message_shape(str(message_id), self.phone_number, None, None)
        message["to"][0]["status"] = status
        message["errors"] = [_error_object(*error)] if error else []
        target = url or message.get("webhook_url") or self.webhook_url

        event = _event(event_type, message)
        if event_id:
            event["data"]["id"] = event_id
        answer = self._post_event(target, event, attempt=1)
        return event["data"]["id"], answer

    # The REST API

    def _build_app(self):
        app = Flask("telnyx_simulator")

        @app.post("/v2/messages")
        def create_message():
            return self._create_message()

        @app.get("/v2/messages/<message_id>")
        def retrieve_message(message_id):
            if not self._authorized():
                return self._refusal(REFUSALS["5550401"])
            with self._lock:
                limited = self.rate_limited_retrievals > 0
                self.rate_limited_retrievals -= int(limited)
                message = copy.deepcopy(self.messages.get(message_id))
            if limited:
                return self._refusal(REFUSALS["5550429"])
            if message is None:
                return _json(
                    telnyx_errors(
                        "10005", "Resource not found", "The message was not found."
                    ),
                    404,
                )
            return _json({"data": message}, 200)

        return app

    def _create_message(self):
        body = request.get_json(silent=True)
        with self._lock:
            self.requests.append(("POST", body))

        if not self._authorized():
            return self._refusal(REFUSALS["5550401"])
        if not isinstance(body, dict):
            return _json(
                telnyx_errors("10015", "Invalid request", "The body is not JSON."), 400
            )
        problem = self._validate(body)
        if problem is not None:
            return problem

        suffix = body["to"][-7:]
        if suffix in REFUSALS:
            return self._refusal(REFUSALS[suffix])
        if suffix == MALFORMED:
            return Response("<html>Bad gateway</html>", 200, mimetype="text/html")
        if suffix == DROPPED:
            _drop_connection()
            return Response(status=204)
        if suffix == SLOW:
            time.sleep(self.slow_seconds)

        message = self._accept(body, OUTCOMES.get(suffix, DELIVERED))
        if suffix == TRICKLE:
            return self._trickle(json.dumps({"data": message}).encode())
        return _json({"data": message}, 200)

    def _trickle(self, body):
        """Answer a byte at a time: each arrives in time, the whole does not."""
        pause = self.slow_seconds / len(body)

        def drip():
            for index in range(len(body)):
                time.sleep(pause)
                yield body[index : index + 1]

        return Response(
            drip(),
            200,
            mimetype="application/json",
            headers={"Content-Length": str(len(body))},
        )

    def _authorized(self):
        if self.api_key is None:
            return True
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    def _refusal(self, refusal):
        status, code, title, detail = refusal
        response = _json(telnyx_errors(code, title, detail), status)
        if status == 429:
            response.headers["Retry-After"] = self.retry_after
        return response

    def _validate(self, body):
        to, text = body.get("to"), body.get("text")
        if not isinstance(to, str) or not to.startswith("+"):
            return _json(
                telnyx_errors(
                    "40310", "Invalid 'to' address", "'to' is not a number.", "/to"
                ),
                400,
            )
        sender = body.get("from")
        if self.phone_number and sender != self.phone_number:
            return _json(
                telnyx_errors(
                    "40305",
                    "Invalid 'from' address",
                    "The 'from' number is not associated with the sending "
                    "messaging profile.",
                    "/from",
                ),
                400,
            )
        if not isinstance(text, str) or not text:
            return _json(
                telnyx_errors(
                    "10015", "Invalid value", "The 'text' field is required.", "/text"
                ),
                422,
            )
        if encoding_and_parts(text)[1] > 10:
            return _json(
                telnyx_errors(
                    "40302",
                    "Message too large",
                    "The message is longer than 10 parts.",
                    "/text",
                ),
                400,
            )
        return None

    # A message's life after the send answer

    def _accept(self, body, outcome):
        message = _message_shape(
            str(uuid.uuid4()), body.get("from"), body["to"], body["text"]
        )
        message["messaging_profile_id"] = body.get("messaging_profile_id", PROFILE_ID)
        message["webhook_url"] = body.get("webhook_url", "")
        message["to"][0]["line_type"] = outcome.line_type
        answer = copy.deepcopy(message)  # as accepted, before its life moves on
        with self._lock:
            self.messages[message["id"]] = message
        target = message["webhook_url"] or self.webhook_url
        if target:
            threading.Thread(
                target=self._play,
                args=(message["id"], outcome, target),
                daemon=True,
            ).start()
        return answer

    def _play(self, message_id, outcome, target):
        """Move a message to its outcome and post its events, as Telnyx would."""
        sent = None
        if self._stopped.wait(self.sent_delay):
            return
        if outcome.sent_event:
            message = self._advance(message_id, "sent")
            if message is None:
                return
            sent = _event("message.sent", message)
            if not outcome.scrambled:
                self._deliver(target, sent)

        if self._stopped.wait(self.final_delay):
            return
        message = self._advance(message_id, outcome.status, outcome)
        if message is None:
            return
        final = _event("message.finalized", message)
        if outcome.scrambled:
            # Out of order and twice each: the final event first, then the
            # sent one, then both again under their same event ids.
            for event in (final, sent, final, sent):
                self._deliver(target, event)
        else:
            self._deliver(target, final)

    def _advance(self, message_id, status, outcome=None):
        now = _telnyx_time()
        with self._lock:
            message = self.messages.get(message_id)
            if message is None:  # forgotten by reset()
                return None
            message["to"][0]["status"] = status
            if status == "sent":
                message["sent_at"] = now
            if outcome is not None:
                message["completed_at"] = now
                if outcome.error:
                    message["errors"] = [_error_object(*outcome.error)]
                if not outcome.sent_event:
                    message["cost"] = None
                    message["to"][0]["carrier"] = ""
            return copy.deepcopy(message)

    def _deliver(self, url, event):
        """Post an event, retrying as Telnyx does when the answer is not a 2xx."""
        for attempt, delay in enumerate((*self.retry_delays, None), start=1):
            answer = self._post_event(url, event, attempt)
            if answer is not None and 200 <= answer[0] < 300:
                return
            if delay is None or self._stopped.wait(delay):
                break
        log.warning("webhook gave up: event %s", event["data"]["id"])

    def _post_event(self, url, event, attempt):
        event["meta"] = {"attempt": attempt, "delivered_to": url}
        body = json.dumps(event).encode()
        headers = {**sign(self.signing_key, body), "Content-Type": "application/json"}
        try:
            response = self._http.post(url, data=body, headers=headers, timeout=2)
        except requests.RequestException as error:
            log.warning("webhook attempt %s failed: %s", attempt, type(error).__name__)
            return None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        return response.status_code, answer


def _message_shape(message_id, from_number, to, text):
    """Return a queued message in the shape Telnyx gives it."""
    encoding, parts = encoding_and_parts(text or "")
    return {
        "record_type": "message",
        "id": message_id,
        "direction": "outbound",
        "type": "SMS",
        "messaging_profile_id": PROFILE_ID,
        "organization_id": ORGANIZATION_ID,
        "from": {
            "phone_number": from_number,
            "carrier": "Telnyx",
            "line_type": "Wireless",
        },
        "to": [
            {
                "phone_number": to,
                "status": "queued",
                "carrier": "T-MOBILE USA, INC.",
                "line_type": "Wireless",
            }
        ],
        "cc": [],
        "text": text,
        "subject": None,
        "media": [],
        "encoding": encoding,
        "parts": parts,
        "tags": [],
        "cost": {"amount": f"{0.004 * parts:.4f}", "currency": "USD"},
        "received_at": _telnyx_time(),
        "sent_at": None,
        "completed_at": None,
        "valid_until": None,
        "webhook_url": "",
        "webhook_failover_url": "",
        "errors": [],
    }


def _event(event_type, message):
    return {
        "data": {
            "event_type": event_type,
            "id": str(uuid.uuid4()),
            "occurred_at": _telnyx_time(),
            "record_type": "event",
            "payload": message,
        },
        "meta": {"attempt": 1, "delivered_to": ""},
    }


def _error_object(code, title, detail=None):
    error = {"code": code, "title": title}
    if detail:
        error["detail"] = detail
    error["source"] = {"pointer": "/to/0/phone_number"}
    return error


def _telnyx_time():
    """Now, as Telnyx writes times: milliseconds and a +00:00 offset."""
    return iso_utc(datetime.now(UTC)).replace("Z", "+00:00")


def _json(document, status):
    return Response(json.dumps(document), status, mimetype="application/json")


def _drop_connection():
    """Close the client's connection without answering, as a failing proxy does."""
    sock = request.environ.get("werkzeug.socket")
    if sock is not None:
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def main(argv=None):
    """Serve the simulator on its own, for benchmarks or a service pointed at it."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python telnyx_simulator.py",
        description="A Telnyx messaging stand-in on this machine.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", help="the only API key accepted (default any)")
    parser.add_argument("--phone-number", help="the only 'from' number accepted")
    parser.add_argument("--webhook-url", help="where events go without webhook_url")
    args = parser.parse_args(argv)

    simulator = TelnyxSimulator(
        api_key=args.api_key,
        phone_number=args.phone_number,
        webhook_url=args.webhook_url,
    )
    print(simulator.start(args.host, args.port), flush=True)
    print(f"public key: {simulator.public_key}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        simulator.stop()


if __name__ == "__main__":
    main()
