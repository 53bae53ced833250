"""Fetching mail: RECEIVE from the stored cursor, open and store each message locally, then
DELETE on the server what is safely stored (unless the account keeps mail on the server).

A packet that cannot be read never stops a fetch: it is kept as *unreadable* (with its id from
a tolerant read, else a marker from the cursor position), left on the server, and the user can
delete it there (:func:`delete_unreadable`). Plain module: no Textual.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mmtp_proto.client import Client
from mmtp_proto.message import OpenedMessage, tolerant_id
from mmtp_proto.packet import is_message_id

from .contacts import CHANGED
from .fanout import note_report
from .mailstore import StoredMessage
from .session import AccountSession

# How much of an unreadable packet its local record shows.
RAW_EXCERPT_CHARS = 600


@dataclass
class FetchResult:
    new: int = 0
    deleted: int = 0
    unreadable: int = 0
    warnings: list[str] = field(default_factory=list)


def fetch(session: AccountSession, *, page: int = 200) -> FetchResult:
    account = session.account
    store = session.store
    result = FetchResult()
    with session.connected() as client:
        cursor = store.cursor(account.name)
        while True:
            answer = client.receive(session.address, since=cursor, limit=page)
            stored_ids: list[str] = []
            for index, packet in enumerate(answer.messages):
                try:
                    opened = _store_one(session, client, packet, result)
                except Exception as exc:  # one message's trouble is never the whole fetch's
                    opened = None
                    reason = f"it could not be stored ({type(exc).__name__})"
                else:
                    reason = (opened.problem or "") if opened.unreadable else ""
                if opened is None or opened.unreadable:
                    marker = f"unreadable-{cursor or 's0'}-{index}"
                    if _keep_unreadable(session, packet, reason, marker):
                        result.unreadable += 1
                else:
                    stored_ids.append(opened.message_id)
            cursor = answer.cursor
            store.set_cursor(account.name, cursor)
            if stored_ids and not account.keep_on_server:
                result.deleted += client.delete(session.address, stored_ids)
            if not answer.more:
                return result


def _store_one(
    session: AccountSession, client: Client, packet: dict[str, Any], result: FetchResult
) -> OpenedMessage:
    """Open and store one packet; an unreadable one is returned unstored."""
    opened, status = session.open(packet, client)
    if opened.unreadable:
        return opened
    if opened.encrypted and not opened.decrypted:
        opened = session.open_with_old_keys(packet) or opened
    if status == CHANGED:
        change = session.contacts.changes().get(opened.sender)
        if change is not None and change.text not in result.warnings:
            result.warnings.append(change.text)
    if session.store.add_message(
        session.account.name,
        packet=packet,
        direction="in",
        folder="Inbox",
        subject=opened.subject or ("(encrypted)" if not opened.decrypted else ""),
        body=opened.body,
        encrypted=opened.encrypted,
        decrypted=opened.decrypted,
        integrity_ok=opened.integrity_ok,
        signature=opened.signature,
        signer_fingerprint=opened.signer_fingerprint,
        problem=opened.problem,
        attachments=opened.attachments,
    ):
        result.new += 1
        note_report(session, packet)  # a DSN: the recipient's state beside the Sent copy
    return opened


def _keep_unreadable(session: AccountSession, packet: object, reason: str, marker: str) -> bool:
    """Record an unreadable packet with what a tolerant read can tell about it."""
    meta = packet.get("meta") if isinstance(packet, dict) else None
    sender = packet.get("sender") if isinstance(packet, dict) else None
    timestamp = meta.get("timestamp") if isinstance(meta, dict) else None
    try:
        raw = json.dumps(packet, ensure_ascii=True)[:RAW_EXCERPT_CHARS]
    except (TypeError, ValueError, RecursionError):
        raw = ""
    return session.store.add_unreadable(
        session.account.name,
        message_id=tolerant_id(packet) or marker,
        reason=reason or "it is not a readable MMTP message",
        sender=sender[:320] if isinstance(sender, str) else "",
        timestamp=timestamp if type(timestamp) is int and timestamp > 0 else 0,
        raw=raw,
    )


def delete_unreadable(session: AccountSession, message: StoredMessage) -> int:
    """DELETE an unreadable message on the server by its id (when it has a real one), then
    forget it here. Returns how many the server deleted (0: it had none by that id)."""
    deleted = 0
    if is_message_id(message.message_id):
        with session.connected() as client:
            deleted = client.delete(session.address, [message.message_id])
    session.store.remove(message.id)
    return deleted
