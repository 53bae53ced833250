"""Sealing a message for sending and opening a received one: the client's side of SPEC §3.

Pure: keys and packets in, packets and results out. Encrypting covers the canonical JSON of
the clear content (subject included); the signature covers the SPEC's signature input.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import pgp
from .address import normalize_address
from .canonical import canonical_json, message_hash
from .errors import LocalError, MMTPError
from .framing import parse_json
from .outgoing import checked_notify
from .packet import build_packet, is_message_id, signature_input_of, validate_clear_content

UNSIGNED = "unsigned"
VERIFIED = "verified"
BAD = "bad"
UNKNOWN = "unknown"


def seal(
    *,
    sender: str,
    recipient: str,
    content: dict[str, Any],
    encrypt_to: list[pgp.PublicKey] | None = None,
    sign_with: pgp.PrivateKey | None = None,
    type: str = "SEND",
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    message_id: str | None = None,
    timestamp: int | None = None,
    notify: list[str] | None = None,
) -> dict[str, Any]:
    """Build a packet, encrypted to `encrypt_to` and signed by `sign_with` when given.

    `notify` (SPEC §10: which delivery reports to ask for) goes in `meta.notify`, under the
    signature; None leaves it out. The stamp is left empty: minting is slow and belongs to
    the caller (with progress).
    """
    validate_clear_content(content)
    notify = checked_notify(notify)
    sent_content = content
    if encrypt_to:
        sent_content = {"encrypted": pgp.encrypt(canonical_json(content), encrypt_to)}
    packet = build_packet(
        sender=sender,
        recipient=recipient,
        content=sent_content,
        type=type,
        message_id=message_id,
        timestamp=timestamp,
        in_reply_to=in_reply_to,
        references=references,
    )
    if notify is not None:
        packet["meta"]["notify"] = notify
    if sign_with is not None:
        packet["verification"]["signature"] = pgp.sign_detached(
            signature_input_of(packet), sign_with
        )
        packet["meta"]["signed"] = True
    return packet


@dataclass
class OpenedMessage:
    packet: dict[str, Any]
    subject: str = ""
    body: str = ""
    attachments: list[dict[str, Any]] = field(default_factory=list)
    # SPEC §9: who the sender listed (Bcc recipients appear in neither).
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    encrypted: bool = False
    decrypted: bool = True
    integrity_ok: bool = True
    signature: str = UNSIGNED
    signer_fingerprint: str | None = None
    problem: str | None = None
    # Not a message this client can read at all (broken shape, or opening failed): `problem`
    # says why. Its id may still be usable to delete it on the server (`tolerant_id`).
    unreadable: bool = False

    @property
    def meta(self) -> dict[str, Any]:
        meta = self.packet.get("meta")
        return meta if isinstance(meta, dict) else {}

    @property
    def message_id(self) -> str:
        return str(self.meta.get("messageId", ""))

    @property
    def sender(self) -> str:
        return str(self.packet.get("sender", ""))

    @property
    def recipient(self) -> str:
        return str(self.packet.get("recipient", ""))

    @property
    def timestamp(self) -> int:
        value = self.meta.get("timestamp", 0)
        return value if isinstance(value, int) else 0


def tolerant_id(packet: object) -> str | None:
    """`meta.messageId` when it is a well-formed id, read without trusting anything else."""
    meta = packet.get("meta") if isinstance(packet, dict) else None
    value = meta.get("messageId") if isinstance(meta, dict) else None
    return value if is_message_id(value) else None


def recipient_of(packet: object) -> str | None:
    """The packet's recipient, normalized, when it is an address at all."""
    try:
        return normalize_address(packet.get("recipient") if isinstance(packet, dict) else None)
    except MMTPError:
        return None


def _shape_problem(packet: object) -> str | None:
    """Why a received packet is not a message at all (None when its frame is sound)."""
    if not isinstance(packet, dict):
        return "the packet is not a JSON object"
    if not isinstance(packet.get("meta"), dict):
        return "the packet has no meta object"
    if tolerant_id(packet) is None:
        return "the packet has no well-formed messageId"
    if not isinstance(packet.get("sender"), str) or not isinstance(packet.get("recipient"), str):
        return "the packet's sender or recipient is not a string"
    if not isinstance(packet.get("content"), dict):
        return "the message has no content"
    meta = packet["meta"]
    refs = meta.get("references")
    if refs is not None and not (isinstance(refs, list) and all(isinstance(r, str) for r in refs)):
        return "meta.references is not a list of ids"
    if meta.get("inReplyTo") is not None and not isinstance(meta["inReplyTo"], str):
        return "meta.inReplyTo is not an id"
    if type(meta.get("timestamp", 0)) is not int:
        return "meta.timestamp is not a whole number"
    return None


def _clear_problem(clear: dict[str, Any]) -> str | None:
    if not isinstance(clear.get("subject", ""), str) or not isinstance(clear.get("body", ""), str):
        return "the subject or body is not text"
    atts = clear.get("attachments") or []
    if not isinstance(atts, list) or not all(isinstance(a, dict) for a in atts):
        return "the attachments are not a list of objects"
    for key in ("to", "cc"):
        listed = clear.get(key) or []
        if not isinstance(listed, list) or not all(isinstance(a, str) for a in listed):
            return f"{key} is not a list of addresses"
    return None


def unreadable(packet: object, reason: str) -> OpenedMessage:
    """The result for a packet that cannot be read: kept, with why, never raised."""
    return OpenedMessage(
        packet=packet if isinstance(packet, dict) else {},
        decrypted=False,
        integrity_ok=False,
        problem=reason,
        unreadable=True,
    )


def open_packet(
    packet: dict[str, Any],
    *,
    my_key: pgp.PrivateKey | None = None,
    sender_key: pgp.PublicKey | None = None,
) -> OpenedMessage:
    """Decrypt, check integrity and verify the signature; never raises for bad input.

    A packet that is not a readable message comes back with `unreadable` set and the reason
    in `problem`, so one hostile message never costs the caller the rest of a page.
    """
    problem = _shape_problem(packet)
    if problem is not None:
        return unreadable(packet, problem)
    try:
        return _open(packet, my_key=my_key, sender_key=sender_key)
    except Exception as exc:  # whatever a hostile packet provokes, it is this message's alone
        return unreadable(packet, f"the message could not be opened ({type(exc).__name__})")


def _open(
    packet: dict[str, Any],
    *,
    my_key: pgp.PrivateKey | None,
    sender_key: pgp.PublicKey | None,
) -> OpenedMessage:
    """Everything inside an encrypted content is the sender's word, unseen by any server, so
    the plaintext is parsed as strictly as a frame (no duplicate keys, bounded nesting)."""
    opened = OpenedMessage(packet=packet)
    packet = opened.packet
    content = packet.get("content")
    verification = packet.get("verification")
    if not isinstance(verification, dict):
        verification = {}
    if not isinstance(content, dict):
        opened.integrity_ok, opened.problem = False, "the message has no content"
        return opened
    try:
        opened.integrity_ok = message_hash(content) == verification.get("messageHash")
    except (TypeError, ValueError, RecursionError):
        opened.integrity_ok = False
    if not opened.integrity_ok:
        opened.problem = "the content does not match its hash: it was altered"
    clear: Any = content
    if "encrypted" in content:
        opened.encrypted = True
        opened.decrypted = False
        if my_key is None:
            opened.problem = "encrypted, and no private key is available to read it"
        else:
            try:
                plaintext = pgp.decrypt(str(content["encrypted"]), my_key)
                try:
                    clear = parse_json(plaintext)
                except MMTPError:
                    raise LocalError(
                        "what the sender encrypted is not MMTP content (not strict JSON)"
                    ) from None
                validate_clear_content(clear)
                opened.decrypted = True
            except (LocalError, MMTPError, ValueError) as exc:
                opened.problem = f"could not decrypt: {exc}"
    if opened.decrypted and isinstance(clear, dict):
        problem = _clear_problem(clear)
        if problem is not None:
            return unreadable(packet, problem)
        opened.subject = str(clear.get("subject", ""))
        opened.body = str(clear.get("body", ""))
        opened.attachments = list(clear.get("attachments") or [])
        opened.to = [str(a) for a in clear.get("to") or []]
        opened.cc = [str(a) for a in clear.get("cc") or []]
    signature = verification.get("signature")
    if signature:
        if sender_key is None:
            opened.signature = UNKNOWN
        else:
            try:
                ok = opened.integrity_ok and pgp.verify_detached(
                    signature_input_of(packet), str(signature), sender_key
                )
            except (KeyError, TypeError, ValueError):
                ok = False
            opened.signature = VERIFIED if ok else BAD
            if ok:
                opened.signer_fingerprint = sender_key.fingerprint
    return opened


def open_message(
    packet: dict[str, Any],
    *,
    my_key: pgp.PrivateKey | None,
    sender_key_for: Callable[[str], pgp.PublicKey | None],
) -> OpenedMessage:
    """:func:`open_packet`, asking for the sender's key only when the packet is signed.

    A lookup that fails (no such key, server unreachable) leaves the signature unknown
    instead of failing the whole opening.
    """
    sender_key = None
    verification = packet.get("verification") if isinstance(packet, dict) else None
    if (
        _shape_problem(packet) is None
        and isinstance(verification, dict)
        and verification.get("signature")
    ):
        with contextlib.suppress(LocalError, MMTPError):
            sender_key = sender_key_for(str(packet.get("sender", "")))
    return open_packet(packet, my_key=my_key, sender_key=sender_key)
