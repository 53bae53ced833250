"""The rules for replying and forwarding: who a reply goes to, its subject, the quote, the
thread references, what a forward carries. Plain module: no Textual; the main screen
only opens a compose screen filled from a `Prefill`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .mailstore import StoredMessage


@dataclass(frozen=True)
class Prefill:
    """What a new compose starts with."""

    to: str = ""
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
    in the same thread."""
    return Prefill(
        to=message.recipient if message.direction == "out" else message.sender,
        subject=prefixed("Re:", message.subject),
        body=quote(message) if quoted else "",
        type="REPLY",
        in_reply_to=message.message_id,
        references=[*message.refs, message.message_id],
    )


def forward(message: StoredMessage) -> Prefill:
    """A forward: no recipient yet, the original's headers and body, its attachments."""
    body = (
        f"\n\n---- Forwarded message ----\nFrom: {message.sender}\nTo: {message.recipient}\n"
        f"Subject: {message.subject}\n\n{message.body}"
    )
    return Prefill(
        subject=prefixed("Fwd:", message.subject),
        body=body,
        type="FORWARD",
        attachments=list(message.attachments),
    )
