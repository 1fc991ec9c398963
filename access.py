"""Who may send and read: a bearer token, or without one, only this machine.

The webhook route is not guarded here: its Ed25519 signature is its credential.
"""

import base64
import binascii
import hmac
import ipaddress
from functools import lru_cache

# Headers that proxies and tunnels (ngrok, nginx, load balancers) add. A
# request that carries one came from elsewhere, whatever its peer address.
# A proxy on this machine that adds none of them cannot be told from a local
# client: README.md says to set API_TOKEN, or configure the proxy to add one.
FORWARDING_HEADERS = (
    "Forwarded",
    "Forwarded-For",
    "X-Forwarded",
    "X-Forwarded-For",
    "X-Forwarded-Host",
    "X-Forwarded-Port",
    "X-Forwarded-Proto",
    "X-Forwarded-Server",
    "X-Original-Forwarded-For",
    "X-Real-IP",
    "X-Client-IP",
    "X-Cluster-Client-IP",
    "CF-Connecting-IP",
    "Fastly-Client-IP",
    "True-Client-IP",
    "X-Envoy-External-Address",
    "Via",
)
# The same names as WSGI keys, so one set operation on the environment finds
# any of them: looking each up through the request's headers cost more than
# the rest of the check.
_FORWARDING_KEYS = frozenset(
    "HTTP_" + name.upper().replace("-", "_") for name in FORWARDING_HEADERS
)
BEARER = 'Bearer realm="sms-delivery-receipts"'
BASIC = 'Basic realm="sms-delivery-receipts", charset="UTF-8"'


class AccessDenied(Exception):
    """The request may not use a guarded route; `status` is 401 or 403."""

    def __init__(self, status, message, challenge=BEARER):
        super().__init__(message)
        self.status = status
        self.message = message
        self.challenge = challenge


def check(request, token, browser=False):
    """Return None when `request` may use a guarded route, else raise AccessDenied.

    With a token set, it may come as a bearer token, or as the password of
    HTTP Basic authentication (any user name), which is how a browser sends it
    once asked; `browser` asks for it that way.
    """
    if token:
        header = request.headers.get("Authorization")
        if not (_bearer_matches(header, token) or _basic_matches(header, token)):
            raise AccessDenied(
                401,
                "Send the API token as 'Authorization: Bearer <API_TOKEN>'.",
                BASIC if browser else BEARER,
            )
        return

    if not _is_loopback(request.remote_addr) or _forwarded(request.environ):
        raise AccessDenied(
            403,
            "This service answers only requests from its own machine until "
            "API_TOKEN is set; set it, then send 'Authorization: Bearer <API_TOKEN>'.",
        )


def _bearer_matches(header, token):
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        given = ""
    # Only the spaces HTTP allows around a value are dropped; the token itself
    # must match exactly. Compared as bytes in constant time, so the answer's
    # timing says nothing about how much of a guess was right.
    return hmac.compare_digest(given.strip(" \t").encode(), token.encode())


def _basic_matches(header, token):
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(" \t"), validate=True).decode()
    except (binascii.Error, ValueError):
        return False
    _, _, password = decoded.partition(":")
    return hmac.compare_digest(password.encode(), token.encode())


@lru_cache(maxsize=1024)
def _is_loopback(address):
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def _forwarded(environ):
    return not _FORWARDING_KEYS.isdisjoint(environ)
