"""The benchmark: every speed and memory target of the service, measured in one run.

Run from the repository root, after the test command of README.md has set up
.venv:  .venv/bin/python bench/run.py   (add --quick for a shorter run).

Everything runs on loopback: gunicorn with the project's gunicorn.conf.py, wrk
as the load generator, and the Telnyx simulator in place of Telnyx. A
hello-world Flask route, served by the same settings in the same run, gives
the ceiling the webhook figures are compared with.
"""

import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import psycopg
import requests
from nacl.signing import SigningKey

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backends import SQLiteDatabase  # noqa: E402
from messaging import iso_utc  # noqa: E402
from signature import sign  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "message-finalized-delivered.json"
FROM_NUMBER = "+13125550100"
API_KEY = "KEY_BENCHMARK"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter, smaller run")
    parser.add_argument(
        "--only",
        metavar="PART",
        action="append",
        choices=sorted(PARTS),
        help="run only this part (repeatable); all parts by default",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: on Debian or Ubuntu, `apt-get install wrk`.")

    scale = Scale(quick=args.quick)
    work = Path(tempfile.mkdtemp(prefix="receipts-bench-"))
    key = SigningKey.generate()
    rows = []
    started = time.monotonic()
    try:
        for name in args.only or PARTS:
            rows += PARTS[name](work, key, scale)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    report(rows, time.monotonic() - started)


class Scale:
    """How much work each figure gets."""

    def __init__(self, quick):
        self.seconds = 5 if quick else 10
        self.events = 30_000 if quick else 60_000
        self.rows = 200_000 if quick else 1_000_000
        self.sends = 200 if quick else 500


class Row:
    """One figure: what was measured, its target and whether it was met."""

    def __init__(self, name, measured, target, ceiling="", met=None):
        self.name, self.measured, self.target = name, measured, target
        self.ceiling, self.met = ceiling, met


# Servers


class Server:
    """A gunicorn (or other) process on a free loopback port."""

    def __init__(self, command, env, log_path, ready_lines=0, port=None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, **env, "GUNICORN_BIND": f"127.0.0.1:{self.port}"}
        self.log = open(log_path, "w")  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until_up(self.url)
        # gunicorn listens before its workers have loaded the app; each worker
        # says "ready" once it has, and a request sent earlier would wait.
        deadline = time.monotonic() + 30
        while Path(log_path).read_text().count("ready") < ready_lines:
            if time.monotonic() > deadline:
                sys.exit(f"The workers at {self.url} never said they were ready.")
            time.sleep(0.05)
        time.sleep(0.3)

    def worker_pids(self):
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def stop(self):
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)
        self.log.close()


def app_env(work, key, database, **extra):
    public_key = base64.b64encode(bytes(key.verify_key)).decode()
    return {
        "TELNYX_API_KEY": API_KEY,
        "TELNYX_PUBLIC_KEY": public_key,
        "TELNYX_PHONE_NUMBER": FROM_NUMBER,
        "DATABASE_URL": f"sqlite:///{database}",
        **extra,
    }


def gunicorn(target, env, log_path, workers=None):
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
    workers = workers or os.cpu_count()
    command += ["--workers", str(workers)]
    return Server([*command, target], env, log_path, ready_lines=workers)


# Webhook ingest against the hello-world ceiling


def ingest(work, key, scale):
    env = app_env(work, key, work / "ingest.db")
    hello = gunicorn("bench.hello:app", env, work / "hello.log")
    server = gunicorn("app:create_app()", env, work / "ingest.log")
    # The two take turns, so that a change in the machine's load between
    # them moves both figures rather than their ratio.
    ceilings, runs = [], []
    try:
        for turn in range(INGEST_TURNS):
            events = work / f"events-{turn}.tsv"
            write_signed_events(events, key, scale.events // INGEST_TURNS)
            seconds = max(1, scale.seconds // INGEST_TURNS)
            ceilings.append(wrk(hello.url, events, seconds))
            runs.append(wrk(server.url, events, seconds))
    finally:
        hello.stop()
        server.stop()
    ceiling, measured = combined(ceilings), combined(runs)

    with sqlite3.connect(work / "ingest.db") as conn:
        counts = [
            conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("messages", "events", "receipts")
        ]
    one_each = len(set(counts)) == 1 and counts[2] >= measured["requests"]
    clean = measured["errors"] == 0 and measured["non_2xx"] == 0
    ratio = measured["rate"] / ceiling["rate"]
    return [
        Row(
            "webhook ingest, signed message.finalized",
            f"{measured['rate']:,.0f}/s",
            "",
            f"{ceiling['rate']:,.0f}/s",
        ),
        Row("  ratio to hello-world", f"{ratio:.2f}", ">= 0.60", "", ratio >= 0.6),
        Row(
            "  errors, and receipts per message",
            f"{measured['errors'] + measured['non_2xx']} errors, "
            f"{counts[2]:,} receipts for {counts[0]:,} messages",
            "0 errors, exactly 1 each",
            "",
            clean and one_each,
        ),
    ]


def ingest_postgres(work, key, scale):
    """Two instances on one PostgreSQL database, loaded at once."""
    url = os.environ.get(
        "BENCH_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test"
    )
    label = "webhook ingest, two instances on PostgreSQL"
    try:
        admin = psycopg.connect(url, autocommit=True, connect_timeout=3)
    except psycopg.Error as error:
        return [Row(label, f"skipped: no PostgreSQL ({type(error).__name__})", "")]
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE SCHEMA {schema}")
    database_url = f"{url}?options=-csearch_path%3D{schema}"
    try:
        env = {**app_env(work, key, work / "unused.db"), "DATABASE_URL": database_url}
        files = [work / "pg-a.tsv", work / "pg-b.tsv"]
        for path in files:
            write_signed_events(path, key, scale.events // 2)
        servers = [
            gunicorn("app:create_app()", env, work / f"pg-{n}.log") for n in "ab"
        ]
        try:
            with ThreadPoolExecutor(max_workers=2) as pool:
                results = list(
                    pool.map(
                        lambda pair: wrk(pair[0].url, pair[1], scale.seconds, 4),
                        zip(servers, files, strict=True),
                    )
                )
        finally:
            for server in servers:
                server.stop()
        counts = [
            admin.execute(f"SELECT COUNT(*) FROM {schema}.{table}").fetchone()[0]
            for table in ("messages", "events", "receipts")
        ]
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()

    rate = sum(result["rate"] for result in results)
    errors = sum(result["errors"] + result["non_2xx"] for result in results)
    requests_done = sum(result["requests"] for result in results)
    one_each = len(set(counts)) == 1 and counts[2] >= requests_done
    return [
        Row(label, f"{rate:,.0f}/s", "reported beside SQLite", ""),
        Row(
            "  errors, and receipts per message",
            f"{errors} errors, {counts[2]:,} receipts for {counts[0]:,} messages",
            "0 errors, exactly 1 each",
            "",
            errors == 0 and one_each,
        ),
    ]


INGEST_TURNS = 2

# What part of the ingest ceiling each step of a webhook's storage takes: the
# service with less and less of it left out (bench/variants.py).
BREAKDOWN = [
    ("no-storage", "  without storage: verify, parse, log, answer"),
    ("empty-commit", "  with an empty write transaction instead"),
    ("event-only", "  with only the event's row written"),
]


def ingest_breakdown(work, key, scale):
    seconds = max(1, scale.seconds // 2)
    env = app_env(work, key, work / "breakdown.db")
    rows = []
    for variant, label in BREAKDOWN:
        hello = gunicorn("bench.hello:app", env, work / "hello.log")
        target = f"bench.variants:app_without({variant!r})"
        server = gunicorn(target, env, work / f"{variant}.log")
        try:
            events = work / f"{variant}.tsv"
            write_signed_events(events, key, scale.events // 2)
            ceiling = wrk(hello.url, events, seconds)
            measured = wrk(server.url, events, seconds)
        finally:
            hello.stop()
            server.stop()
        ratio = measured["rate"] / ceiling["rate"]
        rate, ceiling_rate = measured["rate"], ceiling["rate"]
        rows.append(
            Row(label, f"{rate:,.0f}/s = {ratio:.2f}", "", f"{ceiling_rate:,.0f}/s")
        )
    return rows


def combined(runs):
    """One wrk result for several runs of equal length."""
    return {
        "rate": statistics.mean(run["rate"] for run in runs),
        **{key: sum(run[key] for run in runs) for key in ("requests", "non_2xx")},
        "errors": sum(run["errors"] for run in runs),
    }


def write_signed_events(path, key, count):
    template = json.loads(FIXTURE.read_text())
    with open(path, "w") as out:
        for _ in range(count):
            template["data"]["id"] = str(uuid.uuid4())
            template["data"]["payload"]["id"] = str(uuid.uuid4())
            body = json.dumps(template).encode()
            headers = sign(key, body)
            out.write(
                f"{headers['telnyx-timestamp']}\t"
                f"{headers['telnyx-signature-ed25519']}\t{body.decode()}\n"
            )


def wrk(url, events, seconds, connections=8):
    script = ROOT / "bench" / "webhooks.lua"
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url]
        + ["--", str(events), "1"],
        capture_output=True,
        text=True,
        check=True,
    )
    output = result.stdout + result.stderr
    if "ran out of unique events" in output:
        sys.exit("Too few events were signed for this run; raise Scale.events.")
    return {
        "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),
        "non_2xx": _count(r"Non-2xx or 3xx responses: (\d+)", output),
        "errors": sum(
            int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output)
        ),
    }


def _count(pattern, text):
    found = re.search(pattern, text)
    return int(found.group(1)) if found else 0


# The first request after start


def first_request(work, key, scale):
    env = app_env(work, key, work / "first.db")
    first, paused, typical = first_and_later("app:create_app()", env, work, key)
    hello = first_and_later("bench.hello:app", env, work, key)
    return [
        Row(
            "first webhook after start (median of 3 starts)",
            f"{first:.1f} ms",
            "<= 1.5 x a later one",
            f"{hello[0]:.1f} ms",
            first <= 1.5 * paused,
        ),
        Row(
            f"  a later one, after the same {PAUSE}s pause (median)",
            f"{paused:.1f} ms",
            "",
            f"{hello[1]:.1f} ms",
        ),
        Row(
            "  a later one, back to back (median)",
            f"{typical:.1f} ms",
            "",
            f"{hello[2]:.1f} ms",
        ),
    ]


# A request that follows a pause pays for caches the idle process lost, first
# or not; the first one is compared with later ones after the same pause.
PAUSE = 0.3


def first_and_later(target, env, work, key, starts=3):
    """The median first webhook of a few starts, then medians of later ones."""
    client = requests.Session()
    with QuietServer() as warm_url:
        for _ in range(3):
            post_event(client, warm_url, key)
    firsts, typical, paused = [], [], []
    for _ in range(starts):
        server = gunicorn(target, env, work / "first.log", workers=1)
        try:
            firsts.append(post_event(client, server.url, key))
            typical += [post_event(client, server.url, key) for _ in range(50)]
            for _ in range(5):
                time.sleep(PAUSE)
                paused.append(post_event(client, server.url, key))
        finally:
            server.stop()
    medians = (statistics.median(times) for times in (firsts, paused, typical))
    return tuple(medians)


def post_event(client, url, key):
    template = json.loads(FIXTURE.read_text())
    template["data"]["id"] = str(uuid.uuid4())
    template["data"]["payload"]["id"] = str(uuid.uuid4())
    body = json.dumps(template).encode()
    headers = {**sign(key, body), "Content-Type": "application/json"}
    started = time.perf_counter()
    response = client.post(f"{url}/webhooks/message", data=body, headers=headers)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed


class QuietServer:
    """A bare HTTP server that warms the client's own code paths up."""

    def __enter__(self):
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_port}"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


# A large table


def large_table(work, key, scale):
    database = work / "large.db"
    seeded = time.monotonic()
    sample_id, deep_cursor = seed(database, scale.rows)
    seeded = time.monotonic() - seeded

    env = app_env(work, key, database)
    server = gunicorn("app:create_app()", env, work / "large.log", workers=1)
    try:
        one = p99(f"{server.url}/messages/{sample_id}")
        first_page = p99(f"{server.url}/messages?status=delivered&limit=100")
        deep_page = p99(
            f"{server.url}/messages?status=delivered&limit=100&cursor={deep_cursor}"
        )
        memory = page_through(server)
        # The whole week, and one whose ends fall mid-hour, as the default
        # "last seven days" does: those partial hours are counted row by row.
        stats_week = median_seconds(
            f"{server.url}/stats?since=2026-11-24T00:00:00Z&until=2026-12-01T00:00:00Z"
        )
        stats_uneven = median_seconds(
            f"{server.url}/stats?since=2026-11-24T00:17:00Z&until=2026-11-30T23:43:00Z"
        )
    finally:
        server.stop()

    rows_label = f"{scale.rows:,} rows"
    start_mb, peak_mb, end_mb, pages = memory
    flat = peak_mb - start_mb < 10
    return [
        Row(
            f"GET /messages/<id>, p99, {rows_label}",
            f"{one:.2f} ms",
            "< 10 ms",
            "",
            one < 10,
        ),
        Row(
            "GET /messages?status=delivered, first page, p99",
            f"{first_page:.2f} ms",
            "< 10 ms",
            "",
            first_page < 10,
        ),
        Row(
            "  the same, a page deep in the table, p99",
            f"{deep_page:.2f} ms",
            "< 10 ms",
            "",
            deep_page < 10,
        ),
        Row(
            f"worker memory paging through all ({pages:,} pages)",
            f"{start_mb:.0f} -> peak {peak_mb:.0f} -> {end_mb:.0f} MB",
            "flat",
            "",
            flat,
        ),
        Row(
            f"GET /stats over the week holding all {rows_label}, median",
            f"{stats_week * 1000:.1f} ms",
            "fast (< 100 ms)",
            "",
            stats_week < 0.1,
        ),
        Row(
            "  the same, both ends mid-hour",
            f"{stats_uneven * 1000:.1f} ms",
            "fast (< 100 ms)",
            "",
            stats_uneven < 0.1,
        ),
        Row("  (seeding the table took)", f"{seeded:.0f} s", "", ""),
    ]


def seed(path, count):
    """Fill a database with `count` messages spread over a week, most delivered."""
    SQLiteDatabase(str(path)).migrate()
    statuses = ["delivered"] * 8 + ["delivery_failed", "sent"]
    week_start = datetime(2026, 11, 24, tzinfo=UTC)
    step = timedelta(days=7) / count
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA synchronous = OFF")
        conn.executemany(
            "INSERT INTO messages (message_id, direction, from_number, to_number, text,"
            " status, status_rank, parts, encoding, cost_amount, cost_currency,"
            " created_at, updated_at) VALUES"
            " (?, 'outbound', ?, ?, ?, ?, ?, 1, 'GSM-7', '0.0040', 'USD', ?, ?)",
            (
                (
                    f"bench-{n:08d}",
                    FROM_NUMBER,
                    f"+1312555{n % 10000:04d}",
                    "Your order has shipped",
                    statuses[n % 10],
                    3 if statuses[n % 10] == "sent" else 10,
                    iso_utc(week_start + n * step),
                    iso_utc(week_start + n * step),
                )
                for n in range(count)
            ),
        )
        conn.execute(
            "INSERT INTO events (event_id, message_id, event_type, status,"
            " occurred_at, received_at) SELECT 'event-' || substr(message_id, 7),"
            " message_id, 'message.finalized', status, created_at, created_at"
            " FROM messages"
        )
        # Delivered within a minute, in whole seconds.
        conn.execute(
            "INSERT INTO receipts (message_id, event_id, status, occurred_at,"
            " recorded_at) SELECT message_id, 'event-' || substr(message_id, 7),"
            " status, strftime('%Y-%m-%dT%H:%M:%fZ', created_at,"
            " '+' || (seq % 60) || ' seconds'), created_at"
            " FROM messages WHERE status_rank = 10"
        )
        deep = conn.execute(
            "SELECT seq FROM messages WHERE status = 'delivered' ORDER BY seq"
            " LIMIT 1 OFFSET 200"
        ).fetchone()[0]
    return f"bench-{count // 2:08d}", deep


def median_seconds(url, times=3):
    durations = []
    for _ in range(times):
        started = time.perf_counter()
        requests.get(url, timeout=120).raise_for_status()
        durations.append(time.perf_counter() - started)
    return statistics.median(durations)


def p99(url, seconds=5):
    result = subprocess.run(
        ["wrk", "-t1", "-c1", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    )
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", result.stdout).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def page_through(server):
    """Follow every Link of the whole table; return the worker's RSS over it."""
    (worker,) = server.worker_pids()
    samples = [rss_mb(worker)]
    url, pages = f"{server.url}/messages?limit=1000", 0
    client = requests.Session()
    while url:
        response = client.get(url)
        response.raise_for_status()
        pages += 1
        if pages % 50 == 0:
            samples.append(rss_mb(worker))
        link = response.headers.get("Link")
        url = server.url + re.match(r"<([^>]+)>", link).group(1) if link else None
    samples.append(rss_mb(worker))
    return samples[0], max(samples), samples[-1], pages


def rss_mb(pid):
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


# Sending


def send_overhead(work, key, scale):
    port = free_port()
    simulator = Server(
        [sys.executable, "telnyx_simulator.py", "--port", str(port)],
        {},
        work / "simulator.log",
        port=port,
    )
    try:
        simulator_url = read_simulator_url(work / "simulator.log")
        env = app_env(work, key, work / "send.db", TELNYX_BASE_URL=simulator_url)
        server = gunicorn("app:create_app()", env, work / "send.log", workers=1)
        try:
            client = requests.Session()
            body = {"from": FROM_NUMBER, "to": "+13125550147", "text": "Hi"}
            direct = timings(
                lambda: client.post(f"{simulator_url}/messages", json=body),
                scale.sends,
            )
            through = timings(
                lambda: client.post(
                    f"{server.url}/sms/send",
                    json={"to": "+13125550147", "message": "Hi"},
                ),
                scale.sends,
            )
        finally:
            server.stop()
    finally:
        simulator.stop()

    added = through - direct
    return [
        Row(
            "POST /sms/send, added over the stand-in, p50",
            f"{added:.2f} ms",
            "<= 1.5 ms",
            f"stand-in alone {direct:.2f} ms",
            added <= 1.5,
        )
    ]


def read_simulator_url(log_path):
    for _ in range(100):
        text = log_path.read_text()
        if text:
            return text.splitlines()[0].strip()
        time.sleep(0.05)
    sys.exit("The Telnyx simulator did not start.")


def timings(call, count):
    for _ in range(20):
        call().raise_for_status()
    times = []
    for _ in range(count):
        started = time.perf_counter()
        call().raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


# Helpers


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url, seconds=30):
    host, port = url.split("//")[1].split("/")[0].split(":")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"No server came up at {url}.")


def report(rows, seconds):
    width = max(len(row.name) for row in rows) + 2
    print()
    print(f"{'figure':<{width}}{'measured':<42}{'target':<26}hello-world / reference")
    for row in rows:
        mark = {True: "  ok", False: "  MISSED", None: ""}[row.met]
        print(
            f"{row.name:<{width}}{row.measured:<42}{row.target:<26}{row.ceiling}{mark}"
        )
    judged = [row for row in rows if row.met is not None]
    met = sum(row.met for row in judged)
    missed = ", ".join(row.name.strip() for row in judged if not row.met)
    print()
    print(
        f"summary: {met} of {len(judged)} targets met in {seconds:.0f} s"
        + (f"; missed: {missed}" if missed else "")
    )


PARTS = {
    "ingest": ingest,
    "breakdown": ingest_breakdown,
    "postgresql": ingest_postgres,
    "first": first_request,
    "large": large_table,
    "send": send_overhead,
}

if __name__ == "__main__":
    main()
