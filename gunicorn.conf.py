"""Gunicorn's settings for the service: `gunicorn "app:create_app()"` reads this file.

Every value can be overridden on the command line or in GUNICORN_CMD_ARGS.
"""

import multiprocessing
import os
import shutil
import socket
import sys
import tempfile

from dotenv import load_dotenv

from config import ConfigError, load_settings

# The same settings the app reads, so that a bad one stops gunicorn with the
# app's own message instead of a traceback in every worker.
load_dotenv(".env")
try:
    _settings = load_settings(os.environ)
except ConfigError as error:
    print(error, file=sys.stderr)
    sys.exit(2)

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")

# Sync workers, one per core: every write to SQLite is serialised anyway, and
# more processes than cores only queue for the same lock. WEB_CONCURRENCY,
# which gunicorn also honours, sets another number.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
worker_class = "sync"

# A send waits for Telnyx for up to TELNYX_TIMEOUT_SECONDS; the worker must
# outlive that wait, or the client gets gunicorn's bare 500 instead of our 504.
timeout = _settings.telnyx_timeout + 15
graceful_timeout = timeout

# Metrics are counted per worker in files that a scrape of /metrics adds up;
# the folder is made fresh for each start, so that no old counts leak in.
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
        prefix="receipts-metrics-"
    )
    _made_metrics_dir = True
else:
    _made_metrics_dir = False

# Each worker builds its own app after the fork: a SQLite connection must not
# cross into a child process.
preload_app = False


def child_exit(server, worker):
    """Forget the live values of a worker that is gone."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the metrics folder this start made."""
    if _made_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def post_worker_init(worker):
    """Serve two requests through gunicorn's own path before taking real ones.

    The first request a worker serves pays for code that runs for the first
    time: gunicorn's parser, Flask's dispatch, the route. These are served
    over a socket pair inside the worker, so no client pays it.
    """
    warm_ups = (
        b"GET /messages?limit=1 HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"POST /sms/send HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    )
    for request in warm_ups:
        ours, theirs = socket.socketpair()
        with ours:
            ours.sendall(request)
            ours.shutdown(socket.SHUT_WR)  # or gunicorn waits for more
            worker.handle(worker.sockets[0], theirs, ("127.0.0.1", 0))
            while ours.recv(65536):
                pass
