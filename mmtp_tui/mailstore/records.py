"""What the mail store holds, as plain records: stored messages, drafts, Outbox entries;
the built-in folder names and the rules for a user's own; how messages group into threads."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mmtp_proto.outgoing import Outgoing

FOLDERS = ("Inbox", "Sent", "Drafts", "Archive", "Trash")
OUTBOX = "Outbox"  # not a folder of messages: unsent composes waiting for the server
ALL_INBOXES = "All inboxes"  # every account's Inbox in one list
RESERVED = frozenset((*FOLDERS, OUTBOX, ALL_INBOXES))


@dataclass
class StoredMessage:
    id: int
    account: str
    message_id: str
    direction: str
    folder: str
    sender: str
    recipient: str
    subject: str
    body: str
    timestamp: int
    received_at: int
    read: bool
    encrypted: bool
    decrypted: bool
    integrity_ok: bool
    signature: str
    signer_fingerprint: str | None
    problem: str | None
    in_reply_to: str | None
    refs: list[str]
    thread: str
    attachments: list[dict[str, Any]]
    packet: dict[str, Any] = field(repr=False, default_factory=dict)
    flagged: bool = False
    depth: int = 0  # set by thread ordering: 0 for a thread's first message shown
    hidden_replies: int = 0  # set when threads are collapsed: replies folded under this one
    # A fetched packet that could not be read (`problem` says why): kept on the server until
    # the user deletes it; `message_id` is its id, or an "unreadable-..." marker.
    unreadable: bool = False


@dataclass
class Draft:
    """A compose put aside: the whole Outgoing (type, attachments, choices included)."""

    id: int
    account: str
    outgoing: Outgoing
    updated: int

    @property
    def recipient(self) -> str:
        return ", ".join(self.outgoing.recipients())

    @property
    def subject(self) -> str:
        return self.outgoing.subject


QUEUED, SENT, FAILED = "queued", "sent", "failed"
"""A recipient's state: waiting in the Outbox, taken by the server, or refused (not retried)."""


@dataclass
class Recipient:
    """One recipient of an Outbox entry for several (SPEC §9: one packet each): its own
    stamped packet once sealed (a Bcc recipient's has a ciphertext of its own), and how far
    it got. A partial send keeps the entry with only the recipients still `queued`."""

    address: str
    kind: str  # "to", "cc" or "bcc"
    state: str = QUEUED
    packet: dict[str, Any] | None = field(default=None, repr=False)
    error: str = ""
    message_id: str = ""  # once sealed (it outlives the packet, dropped once sent)

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "kind": self.kind,
            "state": self.state,
            "packet": self.packet,
            "error": self.error,
            "messageId": self.message_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipient:
        packet = data.get("packet")
        state = data.get("state")
        return cls(
            address=str(data.get("address") or ""),
            kind=str(data.get("kind") or "to"),
            state=state if state in (QUEUED, SENT, FAILED) else QUEUED,
            packet=packet if isinstance(packet, dict) else None,
            error=str(data.get("error") or ""),
            message_id=str(data.get("messageId") or ""),
        )


@dataclass
class Delivery:
    """What became of a sent message for one recipient, shown with the copy in Sent."""

    address: str
    state: str
    error: str = ""
    updated: int = 0
    kind: str = "to"  # "to", "cc" or "bcc"


@dataclass
class Queued:
    """A message in the Outbox: what was written, and its sealed, stamped packet (None when
    it could not be sealed offline, e.g. no pinned key for the recipient yet)."""

    id: int
    account: str
    outgoing: Outgoing
    packet: dict[str, Any] | None
    created: int
    attempts: int = 0
    last_error: str = ""
    # Several recipients: one entry each (empty for a one-recipient message, whose stamped
    # packet is `packet`).
    recipients: list[Recipient] = field(default_factory=list)

    def waiting(self) -> list[Recipient]:
        """The recipients still to be sent to."""
        return [r for r in self.recipients if r.state == QUEUED]


MAX_FOLDER_NAME = 64


def folder_name_problem(name: str, existing: Iterable[str]) -> str | None:
    """Why `name` cannot be a new user folder, in words; None when it can."""
    if not name.strip() or name != name.strip():
        return "a folder name cannot be empty or start or end with spaces"
    if len(name) > MAX_FOLDER_NAME:
        return f"a folder name has at most {MAX_FOLDER_NAME} characters"
    if not name.isprintable():
        return "a folder name cannot hold control characters"
    if name.lower() in {n.lower() for n in RESERVED}:
        return f"{name} is one of the built-in folders"
    if name.lower() in {n.lower() for n in existing}:
        return f"there is a folder {name} already"
    return None


def thread_key(message_id: str, in_reply_to: str | None, refs: Iterable[str] | None) -> str:
    refs = [r for r in (refs or []) if isinstance(r, str) and r]
    if refs:
        return refs[0]
    return in_reply_to or message_id


def order_threads(messages: list[StoredMessage]) -> list[StoredMessage]:
    """Group by thread: newest thread first, messages of a thread oldest first; a message
    whose parent is shown above it gets depth parent+1."""
    groups: dict[str, list[StoredMessage]] = {}
    for message in messages:
        groups.setdefault(message.thread, []).append(message)
    ordered: list[StoredMessage] = []
    for group in sorted(
        groups.values(), key=lambda g: max((m.timestamp, m.id) for m in g), reverse=True
    ):
        depth_of: dict[str, int] = {}
        for message in group:
            parent = message.in_reply_to
            message.depth = (
                depth_of[parent] + 1
                if parent in depth_of
                else (1 if ordered_in_thread(message, group) else 0)
            )
            depth_of[message.message_id] = message.depth
            ordered.append(message)
    return ordered


def ordered_in_thread(message: StoredMessage, group: list[StoredMessage]) -> bool:
    """A reply whose parent is not in this folder is still shown under the thread's first."""
    return bool(message.in_reply_to) and group[0] is not message
