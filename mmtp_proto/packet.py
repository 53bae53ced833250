"""The message packet (SPEC §3): building it on the client, validating it on the server.

Validation is strict: every field's presence, type and size is checked and unknown fields
are refused, so what the server stores is exactly what MMTP/1 defines.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from .address import normalize_address
from .canonical import canonical_json, message_hash
from .errors import BAD_REQUEST, HASH_MISMATCH, MMTPError
from .hashcash import DEFAULT_VALIDITY_SECONDS
from .recipients import validate_listed

MESSAGE_TYPES = ("SEND", "REPLY", "FORWARD")
NOTIFY_EVENTS = ("failure", "delay", "success")
MAX_FUTURE_SECONDS = 3600
# SPEC §3: a message is sent within its stamp's life, plus this much for clock skew.
MAX_AGE_BEYOND_STAMP_SECONDS = 3600
MAX_CONTENT_TYPE_CHARS = 255
MAX_SUBJECT_CHARS = 998
MAX_ATTACHMENTS = 100
MAX_REFERENCES = 100
MAX_FILENAME_CHARS = 255
MAX_SIGNATURE_CHARS = 16_384
ARMOR_MESSAGE = "-----BEGIN PGP MESSAGE-----"
ARMOR_SIGNATURE = "-----BEGIN PGP SIGNATURE-----"

_MESSAGE_ID = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MEDIA_PART = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+\-]{0,126}"
# RFC 2045 §5.1: parameters are attribute=value, the value a token or a quoted-string.
_TOKEN = r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]++"
_QUOTED = r'"(?:[^"\\\r\n\x00-\x1f\x7f]++|\\[\x20-\x7e])*+"'
_CONTENT_TYPE = re.compile(
    rf"{_MEDIA_PART}/{_MEDIA_PART}(?:[ \t]*+;[ \t]*+{_TOKEN}=(?:{_TOKEN}|{_QUOTED}))*+"
)

_TOP_KEYS = {"meta", "sender", "recipient", "content", "verification"}
_META_KEYS = {
    "type",
    "messageId",
    "timestamp",
    "hashcashToken",
    "encrypted",
    "signed",
    "signatureVerified",
    "inReplyTo",
    "references",
    "notify",
    "receivedAt",
}
# SPEC §3 rev 2: a signature covers the packet minus these (the stamp and server-set fields).
_UNSIGNED_META = ("hashcashToken", "signed", "signatureVerified", "receivedAt")
_STAMP_KEYS = {"token", "counter"}
_CLEAR_KEYS = {"subject", "body", "attachments", "to", "cc"}  # to/cc: SPEC §9
_ATTACHMENT_KEYS = {"filename", "contentType", "size", "sha256", "data"}
_VERIFICATION_KEYS = {"messageHash", "signature"}


def _bad(message: str) -> MMTPError:
    return MMTPError(BAD_REQUEST, message)


def new_message_id() -> str:
    return secrets.token_hex(16)


def is_message_id(value: object) -> bool:
    return isinstance(value, str) and _MESSAGE_ID.fullmatch(value) is not None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require_object(value: object, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"{field} must be an object")
    return value


def _refuse_unknown(obj: dict[str, Any], allowed: set[str], field: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise _bad(f"{field} has unknown field(s): {', '.join(unknown)}")


def _optional_bool(meta: dict[str, Any], key: str) -> None:
    if key in meta and meta[key] is not None and not isinstance(meta[key], bool):
        raise _bad(f"meta.{key} must be true or false")


# ---------------------------------------------------------------------------- content


def make_attachment(filename: str, data: bytes, content_type: str = "application/octet-stream"):
    return {
        "filename": filename,
        "contentType": content_type,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "data": base64.b64encode(data).decode("ascii"),
    }


def clear_content(
    subject: str, body: str, attachments: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    content: dict[str, Any] = {"subject": subject, "body": body}
    if attachments:
        content["attachments"] = attachments
    return content


def decode_attachment(attachment: dict[str, Any]) -> bytes:
    return base64.b64decode(attachment["data"], validate=True)


def validate_attachment(item: object, field: str) -> dict[str, Any]:
    att = _require_object(item, field)
    _refuse_unknown(att, _ATTACHMENT_KEYS, field)
    for key in _ATTACHMENT_KEYS:
        if key not in att:
            raise _bad(f"{field}.{key} is missing")
    name = att["filename"]
    if (
        not isinstance(name, str)
        or not 1 <= len(name) <= MAX_FILENAME_CHARS
        or any(c in name for c in "/\\\x00")
        or name in (".", "..")
    ):
        raise _bad(f"{field}.filename must be a plain file name of 1-255 characters")
    ctype = att["contentType"]
    if (
        not isinstance(ctype, str)
        or len(ctype) > MAX_CONTENT_TYPE_CHARS
        or not ctype.isascii()
        or not _CONTENT_TYPE.fullmatch(ctype)
    ):
        raise _bad(
            f"{field}.contentType must be a media type such as text/plain, optionally with "
            "RFC 2045 parameters such as 'text/plain; charset=utf-8'"
        )
    if not _is_int(att["size"]) or att["size"] < 0:
        raise _bad(f"{field}.size must be a non-negative integer")
    if not isinstance(att["sha256"], str) or not _HEX64.fullmatch(att["sha256"]):
        raise _bad(f"{field}.sha256 must be 64 lowercase hex characters")
    if not isinstance(att["data"], str):
        raise _bad(f"{field}.data must be base64 text")
    try:
        raw = base64.b64decode(att["data"], validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"{field}.data is not valid base64") from None
    if len(raw) != att["size"]:
        raise _bad(f"{field}.size says {att['size']} bytes but data holds {len(raw)}")
    if hashlib.sha256(raw).hexdigest() != att["sha256"]:
        raise _bad(f"{field}.sha256 does not match the attachment data")
    return att


def validate_clear_content(content: object, field: str = "content") -> dict[str, Any]:
    """The clear content object: also used by clients after decrypting."""
    obj = _require_object(content, field)
    _refuse_unknown(obj, _CLEAR_KEYS, field)
    subject, body = obj.get("subject"), obj.get("body")
    if not isinstance(subject, str):
        raise _bad(f"{field}.subject must be a string")
    if len(subject) > MAX_SUBJECT_CHARS:
        raise _bad(f"{field}.subject is longer than {MAX_SUBJECT_CHARS} characters")
    if not isinstance(body, str):
        raise _bad(f"{field}.body must be a string")
    validate_listed(obj, field)
    if "attachments" in obj:
        atts = obj["attachments"]
        if not isinstance(atts, list) or len(atts) > MAX_ATTACHMENTS:
            raise _bad(f"{field}.attachments must be a list of at most {MAX_ATTACHMENTS}")
        for i, att in enumerate(atts):
            validate_attachment(att, f"{field}.attachments[{i}]")
    return obj


def _validate_content(content: object) -> bool:
    """Return whether the content is the encrypted form."""
    obj = _require_object(content, "content")
    if "encrypted" in obj:
        _refuse_unknown(obj, {"encrypted"}, "encrypted content")
        armored = obj["encrypted"]
        if not isinstance(armored, str) or not armored.lstrip().startswith(ARMOR_MESSAGE):
            raise _bad("content.encrypted must be an ASCII-armored OpenPGP message")
        return True
    validate_clear_content(obj)
    return False


# ---------------------------------------------------------------------------- packet


@dataclass(frozen=True)
class Packet:
    """A validated packet; `raw` is the normalized dict the server stores."""

    raw: dict[str, Any]
    type: str
    message_id: str
    timestamp: int
    sender: str
    recipient: str
    encrypted: bool
    message_hash: str
    signature: str | None
    stamp: object

    def signature_input(self) -> bytes:
        return signature_input_of(self.raw)


def _validate_meta_extras(meta: dict[str, Any]) -> None:
    if meta.get("inReplyTo") is not None and not is_message_id(meta["inReplyTo"]):
        raise _bad("meta.inReplyTo must be a messageId (32 lowercase hex characters)")
    refs = meta.get("references")
    if refs is not None and (
        not isinstance(refs, list)
        or len(refs) > MAX_REFERENCES
        or not all(is_message_id(r) for r in refs)
    ):
        raise _bad(f"meta.references must be a list of at most {MAX_REFERENCES} messageIds")
    notify = meta.get("notify")
    if notify is not None and (
        not isinstance(notify, list)
        or not all(isinstance(n, str) and n in NOTIFY_EVENTS for n in notify)
        or len(set(notify)) != len(notify)
    ):
        raise _bad(
            f"meta.notify must be a list of distinct values drawn from {', '.join(NOTIFY_EVENTS)}"
        )
    stamp = meta.get("hashcashToken")
    if isinstance(stamp, dict):
        _refuse_unknown(stamp, _STAMP_KEYS, "meta.hashcashToken")


def _address(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise _bad(f"{field} must be a string address of the form (name)%(domain)")
    return normalize_address(value, field)


def validate_packet(
    obj: object,
    *,
    now: int | None = None,
    stamp_validity_seconds: int = DEFAULT_VALIDITY_SECONDS,
) -> Packet:
    """Check every field of SPEC §3 and recompute the hash. Returns a normalized copy.

    `stamp_validity_seconds` is the server's; a packet older than it plus 1 hour is refused,
    so an old signed packet cannot be re-injected under a fresh stamp.
    """
    now = int(time.time()) if now is None else now
    packet = _require_object(obj, "packet")
    _refuse_unknown(packet, _TOP_KEYS, "packet")
    for key in ("meta", "sender", "recipient", "content", "verification"):
        if key not in packet:
            raise _bad(f"packet.{key} is missing")
    meta = _require_object(packet["meta"], "meta")
    _refuse_unknown(meta, _META_KEYS, "meta")
    if meta.get("type") == "DSN":
        raise _bad("meta.type DSN is made only by servers; send SEND, REPLY or FORWARD")
    if meta.get("type") not in MESSAGE_TYPES:
        raise _bad(f"meta.type must be one of {', '.join(MESSAGE_TYPES)}")
    if not is_message_id(meta.get("messageId")):
        raise _bad("meta.messageId must be 32 lowercase hex characters (128 random bits)")
    timestamp = meta.get("timestamp")
    if not _is_int(timestamp):
        raise _bad("meta.timestamp must be an integer number of Unix seconds")
    if timestamp > now + MAX_FUTURE_SECONDS:
        raise _bad("meta.timestamp is more than 1 hour in the future; check your clock")
    oldest = now - stamp_validity_seconds - MAX_AGE_BEYOND_STAMP_SECONDS
    if timestamp < oldest:
        raise _bad(
            f"meta.timestamp is {now - timestamp} seconds old; a message must be sent within "
            f"{stamp_validity_seconds + MAX_AGE_BEYOND_STAMP_SECONDS} seconds of its timestamp "
            "(the stamp's validity plus 1 hour): build and sign it again"
        )
    for key in ("encrypted", "signed", "signatureVerified"):
        _optional_bool(meta, key)
    _validate_meta_extras(meta)
    sender = _address(packet["sender"], "sender")
    recipient = _address(packet["recipient"], "recipient")
    if isinstance(packet["content"], dict) and "dsn" in packet["content"]:
        raise _bad("content.dsn is written only by servers (delivery notices); remove it")
    encrypted = _validate_content(packet["content"])
    if meta.get("encrypted") is not None and meta["encrypted"] != encrypted:
        raise _bad("meta.encrypted disagrees with the content (encrypted content has one field)")
    verification = _require_object(packet["verification"], "verification")
    _refuse_unknown(verification, _VERIFICATION_KEYS, "verification")
    claimed = verification.get("messageHash")
    if not isinstance(claimed, str) or not _HEX64.fullmatch(claimed):
        raise _bad("verification.messageHash must be 64 lowercase hex characters")
    actual = message_hash(packet["content"])
    if claimed != actual:
        raise MMTPError(
            HASH_MISMATCH,
            "verification.messageHash does not match the content; hash the canonical JSON "
            "of content exactly as sent",
        )
    signature = verification.get("signature")
    if signature == "":
        signature = None
    if signature is not None and (
        not isinstance(signature, str)
        or len(signature) > MAX_SIGNATURE_CHARS
        or not signature.lstrip().startswith(ARMOR_SIGNATURE)
    ):
        raise _bad("verification.signature must be an ASCII-armored detached OpenPGP signature")
    # Covered keys stay exactly as the sender wrote them (SPEC §3): a filled-in
    # meta.encrypted would change what the signature covers.
    normalized = {
        "meta": {**meta, "signed": signature is not None},
        "sender": sender,
        "recipient": recipient,
        "content": packet["content"],
        "verification": {"messageHash": actual, "signature": signature},
    }
    normalized["meta"].pop("receivedAt", None)
    return Packet(
        raw=normalized,
        type=meta["type"],
        message_id=meta["messageId"],
        timestamp=timestamp,
        sender=sender,
        recipient=recipient,
        encrypted=encrypted,
        message_hash=actual,
        signature=signature,
        stamp=meta.get("hashcashToken"),
    )


def build_packet(
    *,
    sender: str,
    recipient: str,
    content: dict[str, Any],
    type: str = "SEND",
    message_id: str | None = None,
    timestamp: int | None = None,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
) -> dict[str, Any]:
    """A packet without stamp or signature; see `signature_input_of` and hashcash.mint."""
    if type not in MESSAGE_TYPES:
        raise ValueError(f"type must be one of {MESSAGE_TYPES}")
    meta: dict[str, Any] = {
        "type": type,
        "messageId": message_id or new_message_id(),
        "timestamp": int(time.time()) if timestamp is None else timestamp,
        "hashcashToken": None,
        "encrypted": "encrypted" in content,
        "signed": False,
        "signatureVerified": False,
    }
    if in_reply_to:
        meta["inReplyTo"] = in_reply_to
    if references:
        meta["references"] = list(references)
    return {
        "meta": meta,
        "sender": normalize_address(sender, "sender"),
        "recipient": normalize_address(recipient, "recipient"),
        "content": content,
        "verification": {"messageHash": message_hash(content), "signature": None},
    }


def signature_input_of(packet: dict[str, Any]) -> bytes:
    """The bytes a message signature covers (SPEC §3 rev 2), for signer and verifier alike.

    The canonical JSON of the packet without `verification` and without the stamp and the
    server-set fields of `meta`; only `sender` and `recipient` are lowercased, everything else
    is as written (an absent key and a null one differ). So type, threading, notify, id, time,
    both parties and content are all bound.
    """
    covered = {key: value for key, value in packet.items() if key != "verification"}
    meta = packet.get("meta")
    if isinstance(meta, dict):
        covered["meta"] = {k: v for k, v in meta.items() if k not in _UNSIGNED_META}
    for key in ("sender", "recipient"):
        if isinstance(covered.get(key), str):
            covered[key] = covered[key].lower()
    return canonical_json(covered)
