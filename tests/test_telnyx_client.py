"""The Telnyx client's whole-call deadline, on the main thread and off it."""

import threading
import time

import pytest
from support import API_KEY, FROM_NUMBER

from telnyx_client import TelnyxClient, TelnyxTimeout, TelnyxUnreachable

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


def test_a_call_that_waited_past_its_deadline_for_a_thread_is_never_sent(telnyx):
    client = TelnyxClient(API_KEY, telnyx.base_url, DEADLINE, concurrency=1)

    stuck, queued = in_threads(
        [
            lambda: timed_send(client, TRICKLE),
            lambda: timed_send(client, "+13125550147"),
        ]
    )
    time.sleep(2)  # past the trickle's end, when a queued call would go out

    assert stuck[0] == "TelnyxTimeout"
    # Nothing was sent, and the answer says so: a 503, not "it may have gone".
    assert queued[0] == "TelnyxUnreachable"
    assert [request["to"] for request in telnyx.send_requests] == [TRICKLE]
