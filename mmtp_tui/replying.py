"""The rules for replying and forwarding: who a reply goes to, its subject, the quote, the
thread references, what a forward carries. Plain module: no Textual; the main screen
only opens a compose screen filled from a `Prefill`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .mailstore import StoredMessage
from .plain import printable


@dataclass(frozen=True)
class Prefill:
    """What a new compose starts with."""

    to: str = ""  # addresses separated by ", "
    subject: str = ""
    body: str = ""
    type: str = "SEND"
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)


def quote(message: StoredMessage) -> str:
    lines = (message.body or "").splitlines() or [""]
    when = datetime.fromtimestamp(message.timestamp, UTC).strftime("%a, %d %b %Y %H:%M UTC")
    return f"\n\nOn {when}, {message.sender} wrote:\n" + "\n".join(f"> {line}" for line in lines)


def prefixed(prefix: str, subject: str) -> str:
    """`Re: x` once, not `Re: Re: x` (case-insensitive)."""
    if subject.lower().startswith(prefix.lower()):
        return subject
    return f"{prefix} {subject}"


def reply(message: StoredMessage, *, quoted: bool = False) -> Prefill:
    """A reply: to the sender (to the recipient again when replying to our own mail),
    in the same thread. The sender's subject and body come without their control and bidi
    characters: the compose screen shows them as they are, and the reply would echo them."""
    return Prefill(
        to=message.recipient if message.direction == "out" else message.sender,
        subject=printable(prefixed("Re:", message.subject)),
        body=printable(quote(message), newlines=True) if quoted else "",
        type="REPLY",
        in_reply_to=message.message_id,
        references=[*message.refs, message.message_id],
    )


def _addresses(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def everyone(message: StoredMessage) -> list[str]:
    """Every address a message names: its sender, recipient, and any To/Cc its packet
    lists (packets with several recipients), in order, once each."""
    meta = message.packet.get("meta") or {}
    found = [message.sender, message.recipient]
    for key in ("to", "cc"):
        found += _addresses(message.packet.get(key)) + _addresses(meta.get(key))
    seen: dict[str, None] = {}
    for address in found:
        if address and address.lower() not in (a.lower() for a in seen):
            seen[address] = None
    return list(seen)


def reply_all(message: StoredMessage, me: str, *, quoted: bool = False) -> Prefill:
    """A reply to the sender and everyone else the message went to, but not to me."""
    first = reply(message, quoted=quoted)
    others = [a for a in everyone(message) if a.lower() not in (me.lower(), first.to.lower())]
    to = ", ".join([first.to, *others]) if first.to.lower() != me.lower() else ", ".join(others)
    return Prefill(
        to=to or first.to,
        subject=first.subject,
        body=first.body,
        type=first.type,
        in_reply_to=first.in_reply_to,
        references=first.references,
    )


SIGNATURE_MARK = "-- \n"
MAX_SIGNATURE = 4096


def read_signature(path: str) -> str:
    """The signature file's text ('' when unset or unreadable; long ones cut)."""
    if not path:
        return ""
    try:
        with open(os.path.expanduser(path), encoding="utf-8", errors="replace") as fh:
            return fh.read(MAX_SIGNATURE).strip("\n")
    except OSError:
        return ""


def with_signature(body: str, signature: str) -> str:
    """`body` with the signature block appended once (`-- ` on its own line, as mail
    readers expect); a body that already carries it is left alone."""
    signature = signature.rstrip("\n")
    if not signature or SIGNATURE_MARK + signature in body:
        return body
    return (
        f"{body.rstrip()}\n\n{SIGNATURE_MARK}{signature}\n"
        if body.strip()
        else (f"\n\n{SIGNATURE_MARK}{signature}\n")
    )


def forward(message: StoredMessage) -> Prefill:
    """A forward: no recipient yet, the original's headers and body, its attachments."""
    body = (
        f"\n\n---- Forwarded message ----\nFrom: {message.sender}\nTo: {message.recipient}\n"
        f"Subject: {message.subject}\n\n{message.body}"
    )
    return Prefill(
        subject=printable(prefixed("Fwd:", message.subject)),
        body=printable(body, newlines=True),
        type="FORWARD",
        attachments=list(message.attachments),
    )
