"""What the protocol asks of durable storage, whichever engine keeps it.

`Storage` is the interface the handlers and the loop use; `store.Store` (SQLite, the default)
and `store_postgres.PostgresStore` implement it. What they share lives here: the records,
the row checksum, the paging of a mailbox past damaged rows, the schema version check and
the answers to races that only several server processes over one database can lose.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from . import errors
from .errors import MMTPError
from .jsondepth import MAX_DEPTH, too_deep

log = logging.getLogger("mmtp.store")
# A stored packet sits this many levels down in a RECEIVE answer: the answer, its `messages`.
RECEIVE_FRAME_LEVELS = 2


@dataclass(frozen=True)
class KeyRecord:
    email: str
    armored: str
    fingerprint: str
    registered_at: int


@dataclass(frozen=True)
class StoredMessage:
    seq: int
    packet: dict[str, Any]


class StoreError(Exception):
    """The database could not do what was asked (disk full, read-only, damaged, unreachable)."""


class Storage(Protocol):
    """Staged writes made durable by `commit()`; reads see this store's own staged writes.

    `look_again()` is called at the start of each round of requests the loop answers
    together (and before a request answered on its own): whatever another process committed
    before (a replaced key, new mail) is seen from then on, never an older cached copy. A
    request read from its socket after that commit is answered in a later round, so it
    sees the commit. `refresh()` starts each request.
    """

    @property
    def pending(self) -> bool: ...
    @property
    def rollbacks(self) -> int: ...
    # Statements sent in transactions so far (every write; on PostgreSQL, reads there too):
    # whether settling an answer wrote or read staged data after the commit (group_commit).
    @property
    def statements(self) -> int: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...
    def refresh(self) -> None: ...
    def look_again(self) -> None: ...
    def get_key(self, email: str) -> KeyRecord | None: ...
    def put_key(self, email: str, armored: str, fingerprint: str, now: int) -> None: ...
    def find_message_hash(self, recipient: str, message_id: str) -> str | None: ...
    def is_spent(self, stamp_key: str) -> bool: ...
    def add_message(
        self,
        *,
        recipient: str,
        message_id: str,
        message_hash: str,
        packet: dict[str, Any],
        received_at: int,
        stamp_key: str,
        stamp_expires_at: int,
    ) -> int: ...
    def stage_message(self, **fields: Any) -> Callable[[], object] | None: ...
    def count_messages(self, recipient: str) -> int: ...
    def list_messages(
        self, recipient: str, after_seq: int, limit: int, max_bytes: int | None = None
    ) -> tuple[list[StoredMessage], bool]: ...
    def delete_messages(self, recipient: str, message_ids: list[str]) -> int: ...
    def purge_expired_stamps(self, now: int) -> int: ...


# ---------------------------------------------------------------------------- rows


def checksum(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def encode_packet(packet: dict[str, Any]) -> tuple[str, str]:
    """The stored text of a packet and its checksum."""
    text = json.dumps(packet, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text, checksum(text)


def page_messages(
    fetch: Callable[[int, int], Sequence[tuple[int, str, str]]],
    recipient: str,
    after_seq: int,
    limit: int,
    max_bytes: int | None,
) -> tuple[list[StoredMessage], bool]:
    """Up to `limit` intact messages after `after_seq`, and whether rows remain after them.

    `fetch(position, n)` returns up to n (seq, packet text, checksum) rows after `position`
    in seq order. Damaged rows, and rows nesting too deeply for an answer (stored before the
    depth limit), are skipped and do not take a place in the page, so a page is
    empty only when nothing intact is left: a client paging until `more` is false finishes
    even when damaged rows fill a whole page. With `max_bytes`, the page also stops before
    the stored packets would exceed that size (it always holds at least one).
    """
    result: list[StoredMessage] = []
    position = after_seq
    size = 0
    while True:
        wanted = limit - len(result)
        rows = fetch(position, wanted + 1)
        for seq, text, digest in rows[:wanted]:
            if max_bytes is not None and result and size + len(text) > max_bytes:
                return result, True
            position = seq
            if checksum(text) != digest:
                log.error("message row %d for %s is damaged; not serving it", seq, recipient)
                continue
            if too_deep(text, MAX_DEPTH - RECEIVE_FRAME_LEVELS):
                # Stored before the depth limit (SPEC §1): inside a RECEIVE answer it would
                # make the whole frame one no client may read, and jam the mailbox for good.
                log.error("message row %d for %s nests too deeply; not serving it", seq, recipient)
                continue
            size += len(text)
            result.append(StoredMessage(seq, json.loads(text)))
        if len(rows) <= wanted:
            return result, False
        if len(result) == limit:
            return result, True


# ---------------------------------------------------------------------------- schema


def check_schema_version(found: int, supported: int, where: str) -> None:
    """Refuse a database written by a newer server: its data may not mean what we think."""
    if found > supported:
        raise StoreError(
            f"the database {where} has schema version {found}, newer than this server "
            f"understands ({supported}); run the mmtp version that wrote it (or newer), "
            "or restore a backup made for this version"
        )


# ---------------------------------------------------------------------------- races
# One process finds these out before it writes; with several processes over one database,
# another may have written in between. The store's conditional writes notice, and the loser
# of the race gets the answer it would have got a moment later.


def stamp_replayed() -> MMTPError:
    return MMTPError(errors.POW_REPLAYED, "this HashCash stamp was already spent; mint a new one")


def mailbox_full(recipient: str) -> MMTPError:
    return MMTPError(
        errors.MAILBOX_FULL,
        f"the mailbox of {recipient} is full; try later, once its owner has made room",
    )


def account_gone(recipient: str) -> MMTPError:
    """The account was deleted (its name held) after the SEND looked its key up."""
    return MMTPError(errors.UNKNOWN_RECIPIENT, f"{recipient} has no mailbox here any more")


def deleted_already() -> MMTPError:
    # The SEND handler answers from the tombstone instead ("duplicate", or another message).
    return MMTPError(
        errors.BAD_REQUEST,
        "a message with this messageId was delivered to this mailbox and deleted; "
        "use a fresh messageId",
    )


def message_id_taken(same_content: bool) -> MMTPError:
    if same_content:
        # Another connection is storing this very message right now under another stamp:
        # a retry finds it stored and is told it was already delivered.
        return MMTPError(
            errors.INTERNAL, "this message is being stored by another connection; retry"
        )
    return MMTPError(
        errors.BAD_REQUEST,
        "a different message with this messageId is already stored; use a fresh messageId",
    )


def key_changed_meanwhile(email: str) -> MMTPError:
    return MMTPError(
        errors.KEY_EXISTS,
        f"the key of {email} was registered or replaced by another connection meanwhile; "
        f"look it up again, and authenticate as {email} (AUTH) to replace it",
    )
