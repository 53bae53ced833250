"""A message on its way out, before it is sealed: what the user wrote and chose.

Plain data that outlives a session (a draft stores :meth:`Outgoing.to_dict`), so addresses
are kept as typed and only checked when the message is sent. The recipients are lists with
SPEC §9 (To/Cc/Bcc, one packet per recipient) in mind; until that lands a message goes to
exactly one recipient, and :meth:`Outgoing.recipient` says so in words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .address import normalize_address
from .dsn import validate_notify
from .errors import LocalError, MMTPError
from .packet import clear_content

SEND, REPLY, FORWARD = "SEND", "REPLY", "FORWARD"
TYPES = (SEND, REPLY, FORWARD)


def checked_notify(value: object) -> list[str] | None:
    """`meta.notify` as the server checks it (SPEC §10), refused here first: a LocalError in
    the server's words. None (the server's default: failure and delay) stays None."""
    try:
        validate_notify(value)
    except MMTPError as exc:
        raise LocalError(exc.message) from None
    return list(value) if isinstance(value, list) else None  # a list, once it passed


def _strings(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


@dataclass
class Outgoing:
    to: list[str] = field(default_factory=list)
    subject: str = ""
    body: str = ""
    attachments: list[dict[str, Any]] = field(default_factory=list)
    type: str = SEND
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    encrypt: bool = True
    sign: bool = True
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    # Which delivery reports (SPEC §10 DSNs) to ask for; None leaves meta.notify out.
    notify: list[str] | None = None

    def __post_init__(self) -> None:
        # Copies: a caller's lists (a stored message's attachments) must not change with ours.
        self.to, self.cc, self.bcc = list(self.to), list(self.cc), list(self.bcc)
        self.attachments, self.references = list(self.attachments), list(self.references)
        if self.type not in TYPES:
            raise ValueError(f"type must be one of {', '.join(TYPES)}, not {self.type!r}")
        self.notify = checked_notify(self.notify)

    def recipients(self) -> list[str]:
        """Every address as typed, blanks dropped: To, then Cc, then Bcc."""
        return [a.strip() for a in (*self.to, *self.cc, *self.bcc) if a.strip()]

    def recipient(self) -> str:
        """The one normalized recipient; LocalError for none, several, or a bad address."""
        everyone = self.recipients()
        if not everyone:
            raise LocalError("who is it for? the message has no recipient")
        if len(everyone) > 1:
            raise LocalError("a message goes to one recipient for now; send one per recipient")
        return normalize_address(everyone[0])

    def content(self) -> dict[str, Any]:
        """The clear content (SPEC §3) this message seals."""
        return clear_content(self.subject, self.body, self.attachments or None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; :meth:`from_dict` reads it back."""
        return {
            "to": list(self.to),
            "cc": list(self.cc),
            "bcc": list(self.bcc),
            "subject": self.subject,
            "body": self.body,
            "attachments": list(self.attachments),
            "type": self.type,
            "inReplyTo": self.in_reply_to,
            "references": list(self.references),
            "encrypt": self.encrypt,
            "sign": self.sign,
            "notify": None if self.notify is None else list(self.notify),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outgoing:
        """Tolerant of what an older or hand-edited draft holds: wrong types become empty."""
        kind = data.get("type")
        in_reply_to = data.get("inReplyTo")
        attachments = data.get("attachments")
        notify = data.get("notify")
        try:
            notify = checked_notify(notify)
        except LocalError:
            notify = None  # a hand-edited draft's nonsense: the server's default
        return cls(
            to=_strings(data.get("to")),
            cc=_strings(data.get("cc")),
            bcc=_strings(data.get("bcc")),
            subject=str(data.get("subject") or ""),
            body=str(data.get("body") or ""),
            attachments=[a for a in attachments if isinstance(a, dict)]
            if isinstance(attachments, list)
            else [],
            type=kind if kind in TYPES else SEND,
            in_reply_to=in_reply_to if isinstance(in_reply_to, str) else None,
            references=_strings(data.get("references")),
            encrypt=data.get("encrypt") is not False,
            sign=data.get("sign") is not False,
            notify=notify,
        )
