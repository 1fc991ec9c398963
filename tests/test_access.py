"""Who may send and read: the API token, or this machine alone without one."""

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from support import load_event

TOKEN = "s3cret-token-for-tests_0123456789"
GUARDED = [
    ("get", "/messages"),
    ("get", "/messages/4031a6d2-5c1e-4f7b-9a0d-2b7e8c9f1a35"),
    ("post", "/sms/send"),
]


@pytest.fixture
def guarded_client(make_app):
    return make_app(API_TOKEN=TOKEN).test_client()


@pytest.mark.parametrize(("method", "path"), GUARDED)
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN}\xa0",
        f"Bearer \x0b{TOKEN}",
        f"Bearer {TOKEN[:-1]}",
    ],
)
def test_guarded_route_without_the_token_answers_401(
    guarded_client, telnyx, method, path, authorization
):
    headers = {} if authorization is None else {"Authorization": authorization}

    response = getattr(guarded_client, method)(
        path, headers=headers, json={"to": "+13125550147", "message": "Hi"}
    )

    assert response.status_code == 401
    assert response.get_json()["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert telnyx.requests == []


def test_the_token_opens_sending_and_reading(guarded_client, telnyx):
    headers = {"Authorization": f"Bearer {TOKEN}"}

    sent = guarded_client.post(
        "/sms/send", headers=headers, json={"to": "+13125550147", "message": "Hi"}
    )
    listed = guarded_client.get("/messages", headers=headers)

    assert sent.status_code == 200
    assert [m["message_id"] for m in listed.get_json()] == [
        sent.get_json()["message_id"]
    ]


def test_the_token_also_opens_them_from_another_machine(guarded_client):
    response = guarded_client.get(
        "/messages",
        headers={"Authorization": f"Bearer {TOKEN}", "X-Forwarded-For": "203.0.113.9"},
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
    )

    assert response.status_code == 200


def test_webhooks_never_need_the_token(make_app, signing_key):
    from support import Webhooks

    client = make_app(API_TOKEN=TOKEN).test_client()
    response = Webhooks(client, signing_key).post(load_event("message-sent"))

    assert response.status_code == 200


@pytest.mark.parametrize(("method", "path"), GUARDED)
def test_without_a_token_another_machine_gets_403(client, telnyx, method, path):
    response = getattr(client, method)(
        path,
        json={"to": "+13125550147", "message": "Hi"},
        environ_base={"REMOTE_ADDR": "198.51.100.7"},
    )

    assert response.status_code == 403
    assert "API_TOKEN" in response.get_json()["error"]
    assert telnyx.requests == []


@pytest.mark.parametrize(
    "header",
    ["X-Forwarded-For", "Forwarded", "X-Real-IP", "X-Forwarded-Proto", "Via"],
)
def test_without_a_token_forwarded_requests_get_403(client, header):
    response = client.get("/messages", headers={header: "203.0.113.9"})

    assert response.status_code == 403


def test_without_a_token_local_requests_are_served(client):
    for address in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        response = client.get("/messages", environ_base={"REMOTE_ADDR": address})
        assert response.status_code == 200, address


def test_start_up_warns_while_no_token_is_set(make_app, caplog):
    caplog.set_level(logging.WARNING, logger="receipts")

    make_app()
    make_app(API_TOKEN=TOKEN)

    warnings = [r.getMessage() for r in caplog.records if "API_TOKEN" in r.getMessage()]
    assert len(warnings) == 1


def test_short_token_is_refused_at_start(make_app):
    from config import ConfigError

    with pytest.raises(ConfigError, match="API_TOKEN"):
        make_app(API_TOKEN="short")


def test_every_answer_says_nosniff(client, webhooks):
    answers = [
        client.get("/messages"),
        client.get("/nowhere"),
        client.get("/messages", headers={"X-Forwarded-For": "1.2.3.4"}),
        webhooks.post(b"not json"),
    ]

    assert all(a.headers["X-Content-Type-Options"] == "nosniff" for a in answers)


class ForwardingProxy(BaseHTTPRequestHandler):
    """One proxy hop, as ngrok or nginx make: it adds the forwarding headers."""

    target = None

    def do_GET(self):
        answer = requests.get(
            self.target + self.path,
            headers={
                "X-Forwarded-For": self.client_address[0],
                "X-Forwarded-Proto": "https",
                **{k: v for k, v in self.headers.items() if k == "Authorization"},
            },
            timeout=10,
        )
        self.send_response(answer.status_code)
        self.send_header("Content-Type", answer.headers["Content-Type"])
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    def log_message(self, *args):
        pass


@pytest.fixture
def proxy(gunicorn_server):
    service, _ = gunicorn_server
    handler = type("Hop", (ForwardingProxy,), {"target": service.url})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_request_through_a_real_proxy_hop_is_refused_without_a_token(
    gunicorn_server, proxy
):
    service, _ = gunicorn_server

    direct = requests.get(f"{service.url}/messages", timeout=10)
    proxied = requests.get(f"{proxy}/messages", timeout=10)

    assert direct.status_code == 200
    assert proxied.status_code == 403
    assert "API_TOKEN" in proxied.json()["error"]
