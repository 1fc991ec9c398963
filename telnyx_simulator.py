"""A stand-in for Telnyx's messaging API, served over real HTTP on loopback.

It answers `POST /v2/messages` and `GET /v2/messages/{id}` with Telnyx's shapes
and error bodies. The destination number picks the answer, so a fault can be
chosen per request, through the service, with nothing but a phone number.
"""

import json
import socket
import threading
import time
import uuid
from datetime import UTC, datetime

from flask import Flask, Response, request
from werkzeug.serving import make_server

from messaging import iso_utc

# Send-time answers, by the last seven digits of `to`.
FAULTS = {
    "5550105": "opted_out",
    "5550401": "unauthorized",
    "5550422": "invalid",
    "5550429": "rate_limited",
    "5550500": "server_error",
    "5550502": "malformed",
    "5550503": "dropped",
    "5550504": "slow",
}

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
    """Telnyx's messaging endpoints, with faults chosen by destination number."""

    def __init__(self, api_key=None, phone_number=None, slow_seconds=3.0):
        self.api_key = api_key
        self.phone_number = phone_number
        self.slow_seconds = slow_seconds
        self.messages = {}
        self.requests = []
        self._lock = threading.Lock()
        self._server = None
        self.app = self._build_app()

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
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _build_app(self):
        app = Flask("telnyx_simulator")

        @app.post("/v2/messages")
        def create_message():
            return self._create_message()

        @app.get("/v2/messages/<message_id>")
        def retrieve_message(message_id):
            if not self._authorized():
                return self._unauthorized()
            with self._lock:
                message = self.messages.get(message_id)
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
            return self._unauthorized()
        if not isinstance(body, dict):
            return _json(
                telnyx_errors("10015", "Invalid request", "The body is not JSON."), 400
            )
        problem = self._validate(body)
        if problem is not None:
            return problem

        fault = FAULTS.get(body["to"][-7:])
        if fault is not None:
            return self._fault(fault)

        message = self._new_message(body)
        with self._lock:
            self.messages[message["id"]] = message
        return _json({"data": message}, 200)

    def _authorized(self):
        if self.api_key is None:
            return True
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    def _unauthorized(self):
        return _json(
            telnyx_errors(
                "10009",
                "Authentication failed",
                "The API key could not be understood or is not valid.",
            ),
            401,
        )

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

    def _fault(self, fault):
        if fault == "opted_out":
            return _json(
                telnyx_errors(
                    "40300",
                    "Blocked due to STOP message",
                    "The recipient has opted out of messages from this number.",
                    "/to",
                ),
                400,
            )
        if fault == "unauthorized":
            return self._unauthorized()
        if fault == "invalid":
            return _json(
                telnyx_errors(
                    "10015",
                    "Invalid value",
                    "The value of 'to' is not valid for this profile.",
                    "/to",
                ),
                422,
            )
        if fault == "rate_limited":
            response = _json(
                telnyx_errors(
                    "10011",
                    "Too many requests",
                    "The account has exceeded its allowed request rate.",
                ),
                429,
            )
            response.headers["Retry-After"] = RETRY_AFTER_SECONDS
            return response
        if fault == "server_error":
            return _json(
                telnyx_errors(
                    "10007", "Unexpected error", "An unexpected error occurred."
                ),
                500,
            )
        if fault == "malformed":
            return Response("<html>Bad gateway</html>", 200, mimetype="text/html")
        if fault == "dropped":
            _drop_connection()
            return Response(status=204)
        time.sleep(self.slow_seconds)
        return _json({"data": self._new_message(request.get_json())}, 200)

    def _new_message(self, body):
        encoding, parts = encoding_and_parts(body["text"])
        now = iso_utc(datetime.now(UTC)).replace("Z", "+00:00")
        return {
            "record_type": "message",
            "id": str(uuid.uuid4()),
            "direction": "outbound",
            "type": "SMS",
            "messaging_profile_id": body.get("messaging_profile_id", PROFILE_ID),
            "organization_id": ORGANIZATION_ID,
            "from": {
                "phone_number": body.get("from"),
                "carrier": "Telnyx",
                "line_type": "Wireless",
            },
            "to": [
                {
                    "phone_number": body["to"],
                    "status": "queued",
                    "carrier": "T-MOBILE USA, INC.",
                    "line_type": "Wireless",
                }
            ],
            "cc": [],
            "text": body["text"],
            "subject": None,
            "media": [],
            "encoding": encoding,
            "parts": parts,
            "tags": [],
            "cost": {"amount": f"{0.004 * parts:.4f}", "currency": "USD"},
            "received_at": now,
            "sent_at": None,
            "completed_at": None,
            "valid_until": None,
            "webhook_url": body.get("webhook_url", ""),
            "webhook_failover_url": "",
            "errors": [],
        }


def _json(document, status):
    return Response(json.dumps(document), status, mimetype="application/json")


def _drop_connection():
    """Close the client's connection without answering, as a failing proxy does."""
    sock = request.environ.get("werkzeug.socket")
    if sock is not None:
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
