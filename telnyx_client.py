"""The one place that talks to Telnyx's REST API."""

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from urllib.parse import quote

import requests
from urllib3.exceptions import HTTPError as TransportError
from urllib3.exceptions import ReadTimeoutError

CONNECT_TIMEOUT = 5.0


class TelnyxError(Exception):
    """Telnyx refused or failed a request; keeps its HTTP status and first error."""

    def __init__(self, status, code=None, title=None, detail=None, retry_after=None):
        super().__init__(title or f"Telnyx answered HTTP {status}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.retry_after = retry_after


class TelnyxUnreachable(Exception):
    """No answer could be had from Telnyx: no connection, or it was cut."""


class TelnyxTimeout(Exception):
    """Telnyx did not answer in time; the request may or may not have taken effect."""


class TelnyxBusy(TelnyxUnreachable):
    """No thread was free to make the call before its deadline: nothing was sent."""


class TelnyxClient:
    """A small client for the messaging endpoints this service uses."""

    def __init__(self, api_key, base_url, timeout, concurrency=32):
        self._base_url = base_url.rstrip("/")
        self._timeout = (min(CONNECT_TIMEOUT, timeout), timeout)
        # requests' timeout bounds each wait for bytes, not the whole call; an
        # answer that trickles in, or a name server that never answers, could
        # outlast any worker. The calls run on their own threads so that the
        # whole call has a deadline. A call given up on can keep its thread a
        # while longer (a name lookup that hangs, one last read), so there are
        # threads to spare, made only when needed.
        self._deadline = timeout
        self._calls = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="telnyx"
        )
        self._session = requests.Session()
        # The environment's proxy and CA settings are read once, here: left to
        # requests, they are looked up again on every call, which costs more
        # than the rest of the service's work on a send.
        self._session.proxies.update(requests.utils.get_environ_proxies(base_url))
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get(
            "CURL_CA_BUNDLE"
        )
        self._session.verify = bundle or True
        self._session.trust_env = False
        self._session.headers.update(
            {
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                "User-Agent": "sms-delivery-receipts",
            }
        )

    def send_message(self, from_number, to, text, profile_id=None, webhook_url=None):
        """Ask Telnyx to send one SMS; return the message object it answers with."""
        body = {"from": from_number, "to": to, "text": text}
        if profile_id:
            body["messaging_profile_id"] = profile_id
        if webhook_url:
            body["webhook_url"] = webhook_url
        # Never retried: Telnyx offers no idempotency for sends, so a second try
        # after a lost answer could deliver the text twice.
        return self._request("POST", "/messages", json=body)

    def get_message(self, message_id):
        """Return Telnyx's current record of one message."""
        return self._request("GET", f"/messages/{quote(message_id, safe='')}")

    def _request(self, method, path, **kwargs):
        url = self._base_url + path
        deadline = time.monotonic() + self._deadline
        call = self._calls.submit(self._fetch, method, url, deadline, **kwargs)
        try:
            status, headers, body = call.result(timeout=self._deadline)
        except FuturesTimeout as error:
            if call.cancel():
                # Still waiting for a thread: it never started, nothing was sent.
                raise TelnyxBusy("no thread was free to call Telnyx") from error
            raise TelnyxTimeout("Telnyx did not answer in time") from error
        except _AnswerCut as cut:
            if cut.timed_out:
                raise TelnyxTimeout("Telnyx did not answer in time") from cut
            # The status line came, so Telnyx took the request: it decides.
            raise TelnyxError(
                cut.status, title="Telnyx's answer was cut off"
            ) from cut.__cause__
        except requests.ConnectTimeout as error:
            raise TelnyxUnreachable("connection timed out") from error
        except requests.Timeout as error:
            raise TelnyxTimeout("Telnyx did not answer in time") from error
        except requests.RequestException as error:
            raise TelnyxUnreachable(type(error).__name__) from error

        if not 200 <= status < 300:
            raise _error_from(status, headers, body)
        try:
            data = json.loads(body)["data"]
        except (ValueError, KeyError, TypeError) as error:
            raise TelnyxError(
                status, title="Telnyx answered with an unreadable body"
            ) from error
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise TelnyxError(status, title="Telnyx answered without a message id")
        return data

    def _fetch(self, method, url, deadline, **kwargs):
        """Make the call on a pool thread; return its status, headers and body.

        The body is read a piece at a time, and the thread gives up once the
        deadline has passed: an answer that trickles in does not keep it.
        """
        response = self._session.request(
            method, url, timeout=self._timeout, stream=True, **kwargs
        )
        with response:
            pieces = []
            try:
                while piece := response.raw.read1(65536, decode_content=True):
                    pieces.append(piece)
                    if time.monotonic() > deadline:
                        raise ReadTimeoutError(None, url, "past the call's deadline")
            except (TransportError, OSError) as error:
                raise _AnswerCut(response.status_code, error) from error
        return response.status_code, response.headers, b"".join(pieces)


class _AnswerCut(Exception):
    """The answer's status line came but its body did not, whole or in time."""

    def __init__(self, status, error):
        super().__init__(str(error))
        self.status = status
        self.timed_out = isinstance(error, (ReadTimeoutError, TimeoutError))


def _error_from(status, headers, body):
    """Turn a non-200 answer into TelnyxError, reading Telnyx's `errors` list."""
    first = {}
    try:
        errors = json.loads(body).get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
    except (ValueError, AttributeError):
        pass

    return TelnyxError(
        status,
        code=_text(first.get("code")),
        title=_text(first.get("title")),
        detail=_text(first.get("detail")),
        retry_after=headers.get("Retry-After"),
    )


def _text(value):
    return None if value is None else str(value)[:500]
