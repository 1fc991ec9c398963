"""The Telnyx client's whole-call deadline, on the main thread and off it."""

import signal
import threading
import time

import pytest
from support import API_KEY, FROM_NUMBER

from telnyx_client import TelnyxClient, TelnyxTimeout

TRICKLE = "+13125550505"  # the stand-in answers a byte at a time, for 2.5 s
DEADLINE = 1.0


@pytest.fixture
def client(telnyx):
    return TelnyxClient(API_KEY, telnyx.base_url, DEADLINE)


def timed_send(client, to):
    started = time.monotonic()
    try:
        client.send_message(FROM_NUMBER, to, "Hi")
    except TelnyxTimeout:
        return "timeout", time.monotonic() - started
    return "sent", time.monotonic() - started


def test_on_the_main_thread_a_trickle_ends_at_the_deadline(client):
    outcome, seconds = timed_send(client, TRICKLE)

    assert outcome == "timeout"
    assert DEADLINE <= seconds < DEADLINE + 0.5
    # The alarm is put back as it was, and the next call is not disturbed.
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert timed_send(client, "+13125550147")[0] == "sent"


def test_off_the_main_thread_a_trickle_ends_at_the_deadline(client):
    results = []
    thread = threading.Thread(
        target=lambda: results.append(timed_send(client, TRICKLE))
    )
    thread.start()
    thread.join(timeout=10)

    ((outcome, seconds),) = results
    assert outcome == "timeout"
    assert DEADLINE <= seconds < DEADLINE + 0.5


def test_a_timer_someone_else_set_is_left_alone(client):
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(True))
    signal.setitimer(signal.ITIMER_REAL, 1.5)
    try:
        outcome, _ = timed_send(client, TRICKLE)
        time.sleep(1)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    assert outcome == "timeout"
    assert fired == [True]
