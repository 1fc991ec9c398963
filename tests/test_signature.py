"""The verifier on its own: Ed25519 over `timestamp|raw body`, in a time window."""

import pytest
from nacl.signing import SigningKey

from signature import SignatureError, WebhookVerifier, sign

NOW = 1_789_000_000
BODY = b'{"data": {"id": "e1"}}'


@pytest.fixture
def key():
    return SigningKey(bytes(range(32)))


def verifier_for(*keys, tolerance=300):
    return WebhookVerifier([bytes(k.verify_key) for k in keys], tolerance)


def test_signature_made_by_the_key_is_accepted(key):
    verifier_for(key).verify(sign(key, BODY, NOW), BODY, now=NOW)


@pytest.mark.parametrize("offset", [-300, 300])
def test_timestamp_exactly_at_the_tolerance_is_accepted(key, offset):
    verifier_for(key).verify(sign(key, BODY, NOW + offset), BODY, now=NOW)


@pytest.mark.parametrize("offset", [-301, 301])
def test_timestamp_past_the_tolerance_is_stale(key, offset):
    with pytest.raises(SignatureError) as caught:
        verifier_for(key).verify(sign(key, BODY, NOW + offset), BODY, now=NOW)

    assert caught.value.reason == "stale_timestamp"


def test_timestamp_is_part_of_what_is_signed(key):
    headers = sign(key, BODY, NOW)
    headers["telnyx-timestamp"] = str(NOW + 1)

    with pytest.raises(SignatureError) as caught:
        verifier_for(key).verify(headers, BODY, now=NOW)

    assert caught.value.reason == "bad_signature"


def test_any_of_several_keys_may_have_signed(key):
    old, new = SigningKey.generate(), key
    verifier = verifier_for(old, new)

    verifier.verify(sign(new, BODY, NOW), BODY, now=NOW)
    verifier.verify(sign(old, BODY, NOW), BODY, now=NOW)


def test_a_key_not_configured_is_refused(key):
    with pytest.raises(SignatureError):
        verifier_for(key).verify(sign(SigningKey.generate(), BODY, NOW), BODY, now=NOW)


def test_plain_dict_headers_are_read_case_insensitively(key):
    headers = {name.title(): value for name, value in sign(key, BODY, NOW).items()}

    verifier_for(key).verify(headers, BODY, now=NOW)


def test_verifier_without_keys_cannot_be_built():
    with pytest.raises(ValueError):
        WebhookVerifier([], 300)
