"""`python app.py`: the service on Flask's own server, the sandbox, and commands."""

import argparse
import os
import sys
from pathlib import Path

from dotenv import load_dotenv
from werkzeug.serving import WSGIRequestHandler

import db
from app import create_app
from config import ConfigError, load_settings


def main(argv=None):
    """`python app.py`: serve with Flask's own server, made for a laptop."""
    args = _arguments().parse_args(argv)
    if args.command == "trigger":
        import sandbox

        return sandbox.trigger(args)
    if args.command == "copy-sqlite":
        return _copy_sqlite(args.source)

    try:
        if args.sandbox:
            import sandbox

            app = sandbox.create_sandbox_app()
            print(sandbox.banner(app), file=sys.stderr, flush=True)
        else:
            app = create_app()
    except ConfigError as error:
        print(error, file=sys.stderr)
        if not Path(".env").exists():
            print("Copy .env.example to .env and fill it in.", file=sys.stderr)
        return 2

    settings = app.extensions["receipts"].settings
    # FLASK_DEBUG reloads on code changes, but never serves Werkzeug's
    # interactive debugger: it is a console for whoever can reach the port.
    # The sandbox's simulator lives in this process: a reloader would start two.
    reload = settings.debug and not args.sandbox
    app.run(
        settings.host,
        settings.port,
        use_reloader=reload,
        use_debugger=False,
        request_handler=_PlainHandler,
    )
    return 0


def _copy_sqlite(source):
    """`python app.py copy-sqlite FILE`: bring a SQLite history to PostgreSQL."""
    load_dotenv(Path.cwd() / ".env")
    try:
        settings = load_settings(os.environ)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    if not Path(source).is_file():
        print(f"No SQLite database at {source}.", file=sys.stderr)
        return 2
    if settings.database_url.startswith("sqlite:"):
        print(
            "DATABASE_URL names SQLite; set it to the PostgreSQL database to copy "
            "into, such as postgresql://user:password@host:5432/receipts.",
            file=sys.stderr,
        )
        return 2

    source_db = db.SQLiteDatabase(source)
    source_db.migrate()  # an older file is brought up to date first
    target = db.open_database(settings)
    target.migrate()
    try:
        report = db.copy_database(source_db, target)
    except db.StorageError as error:
        print(f"The copy stopped: {error}", file=sys.stderr)
        return 1
    finally:
        target.close()
    for table, (read, added) in report.items():
        print(f"{table}: {read} read, {added} copied, {read - added} already there")
    return 0


class _PlainHandler(WSGIRequestHandler):
    """Werkzeug's request handler, without naming its version to every client."""

    server_version = "sms-delivery-receipts"

    def version_string(self):
        return self.server_version


def _arguments():
    parser = argparse.ArgumentParser(
        prog="python app.py", description="Run the SMS delivery receipts service."
    )
    parser.add_argument(
        "--sandbox",
        action="store_true",
        help="simulate Telnyx on this machine: no account, no real SMS",
    )
    commands = parser.add_subparsers(dest="command")
    trigger = commands.add_parser(
        "trigger", help="send one signed event to a running sandbox service"
    )
    trigger.add_argument("message_id", help="the message the event is about")
    trigger.add_argument(
        "--event",
        default="message.finalized",
        help="event type (default message.finalized; also message.sent)",
    )
    trigger.add_argument(
        "--status", help="status in the event (default sent or delivered)"
    )
    trigger.add_argument("--error-code", help="a Telnyx error code, such as 40008")
    copy = commands.add_parser(
        "copy-sqlite",
        help="copy a SQLite database into the one DATABASE_URL names; safe to re-run",
    )
    copy.add_argument("source", help="the SQLite file, such as receipts.db")
    trigger.add_argument("--error-title", help="the error's title")
    trigger.add_argument(
        "--event-id",
        help="the event's id; repeat one to see a redelivery (default new)",
    )
    port = os.environ.get("PORT") or "5000"
    trigger.add_argument(
        "--url",
        default=f"http://127.0.0.1:{port}",
        help="the sandbox service (default http://127.0.0.1:$PORT)",
    )
    return parser
