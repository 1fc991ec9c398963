"""The Telnyx client's whole-call deadline, on the main thread and off it."""

import socket
import threading
import time

import pytest
from support import API_KEY, FROM_NUMBER

from telnyx_client import TelnyxClient, TelnyxError, TelnyxTimeout, TelnyxUnreachable

TRICKLE = "+13125550505"  # the stand-in answers a byte at a time, for 2.5 s
DEADLINE = 1.0


@pytest.fixture
def client(telnyx):
    return TelnyxClient(API_KEY, telnyx.base_url, DEADLINE)


def timed_send(client, to):
    started = time.monotonic()
    try:
        client.send_message(FROM_NUMBER, to, "Hi")
    except (TelnyxTimeout, TelnyxUnreachable) as error:
        return type(error).__name__, time.monotonic() - started
    return "sent", time.monotonic() - started


def in_threads(calls):
    results = [None] * len(calls)

    def run(index, call):
        results[index] = call()

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)  # in this order
    for thread in threads:
        thread.join(timeout=10)
    return results


def test_a_trickle_ends_at_the_deadline_and_the_next_call_works(client):
    outcome, seconds = timed_send(client, TRICKLE)

    assert outcome == "TelnyxTimeout"
    assert DEADLINE <= seconds < DEADLINE + 0.5
    assert timed_send(client, "+13125550147")[0] == "sent"


def test_calls_from_several_threads_each_keep_their_deadline(client):
    results = in_threads([lambda: timed_send(client, TRICKLE)] * 3)

    for outcome, seconds in results:
        assert outcome == "TelnyxTimeout"
        assert DEADLINE <= seconds < DEADLINE + 0.5


def test_a_trickle_gives_its_thread_back_at_the_deadline(telnyx):
    client = TelnyxClient(API_KEY, telnyx.base_url, DEADLINE, concurrency=1)

    assert timed_send(client, TRICKLE)[0] == "TelnyxTimeout"
    # With a single thread, the next call can only go if the trickle let go.
    outcome, seconds = timed_send(client, "+13125550147")
    assert (outcome, seconds < 0.5) == ("sent", True)


def test_a_call_that_found_no_free_thread_in_time_is_never_sent(telnyx):
    client = TelnyxClient(API_KEY, telnyx.base_url, DEADLINE, concurrency=1)
    release = threading.Event()
    client._calls.submit(release.wait)  # the only thread, busy past the deadline

    outcome, seconds = timed_send(client, "+13125550147")
    release.set()
    time.sleep(0.5)  # when a queued call would have gone out

    assert outcome == "TelnyxBusy"
    assert DEADLINE <= seconds < DEADLINE + 0.5
    assert telnyx.send_requests == []


def test_an_accepted_answer_cut_short_says_telnyx_took_it():
    # Telnyx's status line says 200, then the connection drops mid-body.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_half():
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b'Content-Length: 500\r\n\r\n{"data": {"id": "'
            )

    server = threading.Thread(target=answer_half)
    server.start()
    client = TelnyxClient(API_KEY, f"http://127.0.0.1:{port}/v2", DEADLINE)
    try:
        with pytest.raises(TelnyxError) as raised:
            client.send_message(FROM_NUMBER, "+13125550147", "Hi")
    finally:
        server.join(timeout=5)
        listener.close()

    # A 2xx that was cut off: the app answers 502 "may have been sent".
    assert raised.value.status == 200
    assert "cut off" in str(raised.value)
