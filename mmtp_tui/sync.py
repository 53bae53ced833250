"""Fetching mail: RECEIVE from the stored cursor, open and store each message locally, then
DELETE on the server what is safely stored (unless the account keeps mail on the server).
Plain module: no Textual."""

from __future__ import annotations

from dataclasses import dataclass, field

from .contacts import CHANGED
from .session import AccountSession


@dataclass
class FetchResult:
    new: int = 0
    deleted: int = 0
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
            for packet in answer.messages:
                opened, status = session.open(packet, client)
                if opened.encrypted and not opened.decrypted:
                    opened = session.open_with_old_keys(packet) or opened
                if status == CHANGED:
                    change = session.contacts.changes().get(opened.sender)
                    if change is not None and change.text not in result.warnings:
                        result.warnings.append(change.text)
                if store.add_message(
                    account.name,
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
                stored_ids.append(opened.message_id)
            cursor = answer.cursor
            store.set_cursor(account.name, cursor)
            if stored_ids and not account.keep_on_server:
                result.deleted += client.delete(session.address, stored_ids)
            if not answer.more:
                return result
