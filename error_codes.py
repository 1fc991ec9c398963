"""Telnyx's delivery error codes: titles, whether a retry helps, plain words."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCode:
    """What one code means for someone deciding what to do next."""

    title: str
    retry: str
    explanation: str


# From Telnyx's error-code reference; "retry" says whether and when sending
# again can help.
CODES = {
    "40001": ErrorCode(
        "Not routable (landline or unreachable destination)",
        "no",
        "The number cannot get texts: a landline, or out of service.",
    ),
    "40002": ErrorCode(
        "Blocked as spam (temporary)",
        "after changing content or rate",
        "Carriers held it as likely spam for now; reword it or send more slowly.",
    ),
    "40003": ErrorCode(
        "Blocked as spam (permanent)",
        "no",
        "Carriers block this content or sender as spam for good.",
    ),
    "40004": ErrorCode(
        "Rejected by destination",
        "later",
        "The recipient's carrier refused it.",
    ),
    "40005": ErrorCode(
        "Message expired during transmission",
        "later",
        "It could not be delivered before it expired; the phone may be off.",
    ),
    "40006": ErrorCode(
        "Recipient server unavailable",
        "yes with backoff",
        "The recipient's network was not reachable; it may work later.",
    ),
    "40008": ErrorCode(
        "Undeliverable",
        "yes with backoff",
        "The carrier could not deliver it.",
    ),
    "40009": ErrorCode(
        "Invalid message body",
        "no",
        "The text itself was refused as invalid.",
    ),
    "40010": ErrorCode(
        "Not 10DLC registered",
        "no until registered",
        "The sending number is not registered for 10DLC traffic in the US.",
    ),
    "40011": ErrorCode(
        "Too many requests upstream",
        "after slowing down",
        "Too many messages upstream; slow down.",
    ),
    "40012": ErrorCode(
        "Invalid destination number",
        "no",
        "The destination number does not exist.",
    ),
    "40013": ErrorCode(
        "Invalid source number",
        "no",
        "The sending number is not valid for this message.",
    ),
    "40014": ErrorCode(
        "Expired in queue (not billed)",
        "after slowing down",
        "It waited too long in Telnyx's queue (not billed); send more slowly.",
    ),
    "40015": ErrorCode(
        "Blocked by Telnyx spam filter",
        "no",
        "Telnyx's own spam filter stopped it.",
    ),
    "40016": ErrorCode(
        "T-Mobile 10DLC daily sending limit reached",
        "after the daily reset",
        "T-Mobile's daily limit for this 10DLC brand was reached.",
    ),
    "40017": ErrorCode(
        "AT&T 10DLC spam rejection",
        "after changing content",
        "AT&T flagged it as spam; change the wording.",
    ),
    "40018": ErrorCode(
        "AT&T 10DLC sending limit reached",
        "after slowing down",
        "AT&T's sending limit for this campaign was reached.",
    ),
    "40019": ErrorCode(
        "AT&T invalid tag data",
        "no",
        "AT&T refused the campaign's tag data.",
    ),
    "40020": ErrorCode(
        "Artificial traffic inflation suspected",
        "after 24 hours",
        "Traffic looked artificially inflated; wait a day.",
    ),
    "40300": ErrorCode(
        "Recipient opted out (replied STOP)",
        "no",
        "The recipient replied STOP; they must opt in again.",
    ),
    "40302": ErrorCode(
        "Message too large",
        "no",
        "The text is longer than 10 parts.",
    ),
    "40305": ErrorCode(
        "Invalid from address for this messaging profile",
        "no",
        "The sending number is not on the messaging profile used.",
    ),
    "40310": ErrorCode(
        "Invalid to address",
        "no",
        "The destination is not a valid number.",
    ),
    "40318": ErrorCode(
        "Message queue full",
        "after backing off",
        "Telnyx's queue for this number is full; back off.",
    ),
    "40329": ErrorCode(
        "Toll-free number not verified",
        "no",
        "The toll-free number is not verified.",
    ),
    "40330": ErrorCode(
        "Toll-free number not provisioned",
        "no",
        "The toll-free number is not provisioned for messaging.",
    ),
}


def describe(code):
    """The known meaning of a code, or None for one this table lacks."""
    return CODES.get(str(code))
