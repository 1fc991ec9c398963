"""What only a real HTTP server shows: bodies without a length, broken chunking."""

import json
import socket

import pytest
import requests
from support import load_event, new_id

from signature import sign

LIMIT = 1024 * 1024


def chunks(body, size=65536):
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize("path", ["/sms/send", "/webhooks/message"])
def test_chunked_body_over_the_limit_answers_413(gunicorn_server, path):
    service, _ = gunicorn_server
    body = b'{"to": "+13125550147", "message": "' + b"x" * LIMIT + b'"}'

    response = requests.post(
        f"{service.url}{path}",
        data=chunks(body),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )

    assert response.status_code == 413
    assert response.json()["error"]


@pytest.mark.parametrize(
    ("size", "status"),
    [(LIMIT, 200), (LIMIT + 4096, 413)],
    ids=["exactly the limit is accepted", "past the limit is refused, not cut"],
)
def test_signed_event_padded_to_a_size(gunicorn_server, signing_key, size, status):
    service, _ = gunicorn_server
    event = json.dumps(load_event("message-finalized-delivered", event_id=new_id()))
    body = event.encode() + b" " * (size - len(event.encode()))

    response = requests.post(
        f"{service.url}/webhooks/message",
        data=chunks(body),
        headers={**sign(signing_key, body), "Content-Type": "application/json"},
        timeout=30,
    )

    assert response.status_code == status


@pytest.mark.parametrize(
    "chunk", [b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabcdef\r\n0\r\n\r\n"]
)
@pytest.mark.parametrize("path", ["/sms/send", "/webhooks/message"])
def test_broken_chunked_encoding_answers_400_json(gunicorn_server, path, chunk):
    service, _ = gunicorn_server
    port = int(service.url.rsplit(":", 1)[1])
    request = (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode() + chunk

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while data := sock.recv(65536):
            answer += data

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head
    assert json.loads(body)["error"]
