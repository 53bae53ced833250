"""Delivery status notifications (SPEC §10): what the home server stores in a sender's mailbox
when a relayed message failed, is delayed, or (when asked) was delivered.

A DSN is an ordinary stored packet with `meta.type` "DSN", no stamp and no signature, made only
by the home server. Everything in it that came from a remote server (the diagnostic) is
untrusted text: control characters go, length is bounded, and it is never markup.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from .address import domain_of
from .canonical import message_hash
from .errors import BAD_REQUEST, NO_ROUTE, REMOTE_UNAVAILABLE, MMTPError, untrusted_text
from .packet import new_message_id

DSN_TYPE = "DSN"
POSTMASTER = "postmaster"
NOTIFY_VALUES = ("failure", "delay", "success")
DEFAULT_NOTIFY = frozenset({"failure", "delay"})
MAX_DIAGNOSTIC_CHARS = 500
DEFAULT_DELAY_NOTICE_SECONDS = 4 * 3600

Action = Literal["failed", "delayed", "delivered"]
_EVENT_OF: dict[str, str] = {"failed": "failure", "delayed": "delay", "delivered": "success"}


# --- meta.notify -------------------------------------------------------------------------


def validate_notify(value: object) -> None:
    """`meta.notify` of a submitted packet: absent/null, or a list of distinct values from
    "failure", "delay", "success". Anything else is BAD_REQUEST naming the field."""
    if value is None:
        return
    if (
        not isinstance(value, list)
        or not all(isinstance(item, str) and item in NOTIFY_VALUES for item in value)
        or len(set(value)) != len(value)
    ):
        raise MMTPError(
            BAD_REQUEST,
            'meta.notify must be a list of distinct values from "failure", "delay", "success" '
            "([] asks for no reports)",
        )


def notify_events(meta: dict[str, Any]) -> frozenset[str]:
    """The events the sender asked reports for: the default when `notify` is absent or null."""
    value = meta.get("notify")
    if value is None:
        return DEFAULT_NOTIFY
    return frozenset(item for item in value if item in NOTIFY_VALUES)


def wants_dsn(meta: dict[str, Any], action: Action) -> bool:
    """Whether `action` on a message with this `meta` produces a DSN. DSNs are never reported
    on themselves (a DSN is never relayed, but a careful server does not rely on that)."""
    if meta.get("type") == DSN_TYPE:
        return False
    return _EVENT_OF[action] in notify_events(meta)


def delay_notice_due(
    queued_at: float,
    now: float,
    *,
    already_sent: bool,
    threshold: float = DEFAULT_DELAY_NOTICE_SECONDS,
) -> bool:
    """A "delayed" DSN is sent once, when a job has waited `threshold` seconds."""
    return not already_sent and now - queued_at >= threshold


# --- untrusted text ----------------------------------------------------------------------


def clean_diagnostic(text: object, limit: int = MAX_DIAGNOSTIC_CHARS) -> str:
    """Remote text made safe to store and show: control and format characters (bidi
    overrides included) become spaces, runs of white space one space, at most `limit`
    characters (cut with an ellipsis)."""
    return untrusted_text(text, limit)


# --- the packet --------------------------------------------------------------------------


def build_dsn(
    original: dict[str, Any],
    *,
    action: Action,
    code: str | None,
    diagnostic: object,
    attempts: int,
    last_attempt_at: int,
    remote: str | None,
    now: int | None = None,
    retry_until: int | None = None,
) -> dict[str, Any]:
    """A DSN packet about `original` (the packet as queued), ready to store in the sender's
    mailbox. `code` is the remote's code, or NO_ROUTE / REMOTE_UNAVAILABLE / POW_EXPIRED for a
    local reason; None for "delivered". `retry_until` (Unix seconds) lets a "delayed" report
    say until when the server keeps trying."""
    sender = original["sender"]
    recipient = original["recipient"]
    original_id = original["meta"]["messageId"]
    safe = clean_diagnostic(diagnostic)
    content = {
        "subject": _subject(action, recipient),
        "body": _body(action, code, recipient, safe, attempts, retry_until),
        "dsn": {
            "messageId": original_id,
            "recipient": recipient,
            "action": action,
            "code": code,
            "diagnostic": safe,
            "attempts": int(attempts),
            "lastAttemptAt": int(last_attempt_at),
            "remote": remote,
        },
    }
    return {
        "meta": {
            "type": DSN_TYPE,
            "messageId": new_message_id(),
            "timestamp": int(time.time()) if now is None else int(now),
            "hashcashToken": None,
            "encrypted": False,
            "signed": False,
            "signatureVerified": False,
            "inReplyTo": original_id,
        },
        "sender": f"({POSTMASTER})%({domain_of(sender)})",
        "recipient": sender,
        "content": content,
        "verification": {"messageHash": message_hash(content), "signature": None},
    }


def _subject(action: Action, recipient: str) -> str:
    if action == "failed":
        return f"Undeliverable: your message to {recipient}"
    if action == "delayed":
        return f"Delayed: your message to {recipient} has not arrived yet"
    return f"Delivered: your message to {recipient}"


# What happened and what to do, per code, in words a user understands.
_FAILED_ADVICE: dict[str, str] = {
    "UNKNOWN_RECIPIENT": "The receiving server has no mailbox by that name. Check the address "
    "for a typo and send the message again.",
    NO_ROUTE: "No MMTP server could be found for that domain: it does not take MMTP mail, or "
    "the domain is misspelled. Check the address.",
    "POW_EXPIRED": "The receiving server could not be reached before the message's stamp ran "
    "out, so the message was given up. Send it again later; if this keeps happening, the "
    "recipient's server may be down for a long time.",
    "POW_INSUFFICIENT": "The receiving server asks for a stronger stamp than this message "
    "carried. Send the message again; your mail program will mint a stamp for that server.",
    "MAILBOX_FULL": "The recipient's mailbox is full. Tell them another way, or try later.",
    "FORBIDDEN": "The receiving server refused the message. Ask its operator why, or reach "
    "the recipient another way.",
    "NOT_LOCAL": "The receiving server says that address is not one of its own. Check the address.",
    "SIGNATURE_INVALID": "The receiving server could not verify your signature on the "
    "message. Check that your registered key is current and send it again.",
    "FRAME_TOO_LARGE": "The message is larger than the receiving server accepts. Send it "
    "again with fewer or smaller attachments.",
}
_FAILED_DEFAULT = (
    "The receiving server refused the message for good, so it will not be retried. Check the "
    "address and the message, and send it again if it should go through."
)


def _body(
    action: Action,
    code: str | None,
    recipient: str,
    diagnostic: str,
    attempts: int,
    retry_until: int | None,
) -> str:
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    if action == "delivered":
        return f"Your message was delivered to {recipient}'s server. Nothing to do."
    if action == "delayed":
        until = f" until {_utc(retry_until)}" if retry_until else ""
        lines = [
            f"Your message to {recipient} has not been delivered yet ({tries} so far). "
            f"This server keeps trying{until}; you need not do anything now. You will hear "
            "again only if it finally fails (or, if you asked, when it arrives)."
        ]
    else:
        lines = [
            f"Your message to {recipient} could not be delivered ({tries}).",
            _FAILED_ADVICE.get(code or "", _FAILED_DEFAULT),
        ]
    if code == REMOTE_UNAVAILABLE and action == "delayed":
        lines.append("The recipient's server could not be reached.")
    if diagnostic:
        lines.append(f"The reason given: {diagnostic}")
    if code:
        lines.append(f"(code {code})")
    return "\n\n".join(lines)


def _utc(ts: int) -> str:
    return time.strftime("%a, %d %b %Y %H:%M UTC", time.gmtime(ts))
