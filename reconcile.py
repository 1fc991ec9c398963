"""Reconciliation: ask Telnyx about messages whose final webhook never came.

Run from cron as `flask --app app reconcile --older-than 1h`. What Telnyx
says goes through the same rules as a webhook, recorded as an event whose id
names the message and the status, so a second run finds nothing new to do.
"""

import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import click
from flask import current_app
from flask.cli import with_appcontext

import db
from messaging import MalformedEvent, iso_utc, update_from_record
from telnyx_client import TelnyxError, TelnyxTimeout, TelnyxUnreachable

log = logging.getLogger(__name__)

EVENT_TYPE = "reconciliation"
MAX_WAITS = 5
LONGEST_WAIT = 60.0
_DURATION = re.compile(r"(\d+)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass
class Report:
    """What a run found: changes as (message id, before, after)."""

    checked: int = 0
    changed: list = field(default_factory=list)
    unknown: int = 0
    failed: int = 0


def reconcile(database, telnyx, older_than, sleep=time.sleep):
    """Bring every message not final after `older_than` up to Telnyx's record."""
    created_before = iso_utc(datetime.now(UTC) - older_than)
    report = Report()
    for message_id, before in db.unfinished_messages(database, created_before):
        report.checked += 1
        record = _fetch(telnyx, message_id, sleep)
        if record is None:
            report.unknown += 1
            continue
        if record is False:
            report.failed += 1
            continue
        try:
            update = update_from_record(record)
        except MalformedEvent as error:
            log.warning("reconcile: unreadable record for %s: %s", message_id, error)
            report.failed += 1
            continue
        event_id = f"reconcile:{message_id}:{update.status}"
        db.apply_event(database, event_id, EVENT_TYPE, update)
        after = db.status_of(database, message_id)
        if after != before:
            log.info("reconcile: message %s %s -> %s", message_id, before, after)
            report.changed.append((message_id, before, after))
    return report


def _fetch(telnyx, message_id, sleep):
    """Telnyx's record, None when it has none, False when it cannot be had."""
    for _ in range(MAX_WAITS):
        try:
            return telnyx.get_message(message_id)
        except TelnyxError as error:
            if error.status == 404:
                return None
            if error.status != 429:
                log.warning(
                    "reconcile: Telnyx HTTP %s for %s", error.status, message_id
                )
                return False
            # Telnyx asks to slow down: wait as long as it says, then again.
            sleep(min(_seconds(error.retry_after), LONGEST_WAIT))
        except (TelnyxTimeout, TelnyxUnreachable) as error:
            log.warning("reconcile: Telnyx unavailable for %s: %s", message_id, error)
            return False
    return False


def _seconds(retry_after):
    try:
        return max(float(retry_after), 0.0)
    except (TypeError, ValueError):
        return 1.0


def parse_duration(text):
    """'90', '90s', '15m', '2h' or '1d' as a timedelta."""
    found = _DURATION.fullmatch(text.strip())
    if not found:
        raise ValueError(text)
    return timedelta(seconds=int(found.group(1)) * _UNITS[found.group(2)])


class _Duration(click.ParamType):
    name = "duration"

    def convert(self, value, param, ctx):
        try:
            return parse_duration(value)
        except ValueError:
            self.fail("use a number with s, m, h or d, such as 30m or 2h", param, ctx)


@click.command("reconcile")
@click.option(
    "--older-than",
    type=_Duration(),
    default="1h",
    show_default=True,
    help="only messages created at least this long ago",
)
@with_appcontext
def reconcile_command(older_than):
    """Ask Telnyx about messages still not final, and record what it says."""
    services = current_app.extensions["receipts"]
    report = reconcile(services.database, services.telnyx, older_than)
    for message_id, before, after in report.changed:
        click.echo(f"{message_id}: {before} -> {after}")
    click.echo(
        f"checked {report.checked}, changed {len(report.changed)}, "
        f"unknown to Telnyx {report.unknown}, failed {report.failed}"
    )
    if report.failed:
        raise SystemExit(1)
