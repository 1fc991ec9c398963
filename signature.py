"""Verification of Telnyx webhook signatures: Ed25519 over `timestamp|raw body`."""

import base64
import binascii
import re
import time

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"

_DIGITS = re.compile(r"^[0-9]{1,12}$")


class SignatureError(Exception):
    """A webhook is not provably from Telnyx; `reason` is a short stable label."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


class WebhookVerifier:
    """Checks that a body was signed by one of Telnyx's keys, recently."""

    def __init__(self, public_keys, tolerance_seconds):
        if not public_keys:
            raise ValueError("at least one public key is needed")
        self._keys = [VerifyKey(bytes(key)) for key in public_keys]
        self._tolerance = tolerance_seconds

    def verify(self, headers, body, now=None):
        """Return None if `body` is signed and fresh, else raise SignatureError."""
        timestamp = _header(headers, TIMESTAMP_HEADER)
        signature = _decode_signature(_header(headers, SIGNATURE_HEADER))

        if not _DIGITS.match(timestamp):
            raise SignatureError("bad_timestamp", "The timestamp is not Unix seconds.")
        now = time.time() if now is None else now
        # Both directions: a far-future timestamp would let a captured event be
        # replayed for as long as it stays "fresh".
        if abs(now - int(timestamp)) > self._tolerance:
            raise SignatureError(
                "stale_timestamp", "The timestamp is outside the accepted window."
            )

        # The signature covers the bytes exactly as sent; parsing the JSON and
        # serialising it again would change them.
        signed = timestamp.encode("ascii") + b"|" + body
        for key in self._keys:
            try:
                key.verify(signed, signature)
                return
            except BadSignatureError:
                continue
        raise SignatureError("bad_signature", "The signature does not match.")


def _header(headers, name):
    value = headers.get(name)
    if value is None:
        lowered = {key.lower(): item for key, item in headers.items()}
        value = lowered.get(name)
    if not value or not value.strip():
        raise SignatureError("missing_header", f"The {name} header is missing.")
    return value.strip()


def _decode_signature(text):
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise SignatureError(
            "bad_signature", "The signature is not valid base64."
        ) from error
    if len(raw) != 64:
        raise SignatureError("bad_signature", "The signature is not 64 bytes long.")
    return raw


def sign(signing_key, body, timestamp=None):
    """Return the headers Telnyx would send with `body`, signed by `signing_key`."""
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    signed = signing_key.sign(timestamp.encode("ascii") + b"|" + body)
    return {
        SIGNATURE_HEADER: base64.b64encode(signed.signature).decode("ascii"),
        TIMESTAMP_HEADER: timestamp,
    }
