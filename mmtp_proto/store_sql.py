"""The storage rules both backends (`store.Store` on SQLite, `store_postgres.PostgresStore`)
run with the same SQL: written once here with `?` placeholders, which `pg` turns into
psycopg's `%s`, so a rule (which key a registration may replace, when a stamp counts as
spent, how a mailbox is paged) changes in one place.

`SharedQueries` is a mixin over the backend's `_read`, `_write` and `_sql`; what differs
between the engines (locking, caches, how a message and its stamp are written in one go)
stays in the backends.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from .storage import (
    KeyRecord,
    StoredMessage,
    key_changed_meanwhile,
    message_id_taken,
    page_messages,
)
from .store_accounts import _UNSET, AccountRecord

KEY_INSERT = "INSERT INTO keys (email, armored, fingerprint, registered_at) VALUES (?, ?, ?, ?)"
KEY_UPSERT = (
    " ON CONFLICT (email) DO UPDATE SET armored = excluded.armored,"
    " fingerprint = excluded.fingerprint, registered_at = excluded.registered_at"
)
MESSAGE_COLUMNS = "recipient, sender, message_id, message_hash, received_at, size, packet, checksum"
MESSAGE_INSERT = (
    f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT DO NOTHING"
)
STAMP_SPEND = "INSERT INTO spent_stamps (stamp, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING"
STAMP_UNSPEND = "DELETE FROM spent_stamps WHERE stamp = ?"
IS_SPENT = "SELECT 1 FROM spent_stamps WHERE stamp = ?"
MAILBOX_USAGE = "SELECT count(*), coalesce(sum(size), 0) FROM messages WHERE recipient = ?"
MAILBOX_PAGE = (
    "SELECT seq, packet, checksum FROM messages WHERE recipient = ? AND seq > ?"
    " ORDER BY seq LIMIT ?"
)
PURGE_STAMPS = "DELETE FROM spent_stamps WHERE expires_at < ?"
ACCOUNT_UPSERT = (
    "INSERT INTO accounts (email, disabled, max_messages, max_bytes) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (email) DO UPDATE SET disabled = excluded.disabled,"
    " max_messages = excluded.max_messages, max_bytes = excluded.max_bytes"
)
TOMBSTONED = "SELECT 1 FROM tombstones WHERE recipient = ? AND sender = ? AND message_id = ?"
# A name held after its account was deleted: no mail may go into it any more.
NAME_HELD = "SELECT 1 FROM held_names WHERE email = ? AND until > ?"
TOMBSTONE_HASH = (
    "SELECT message_hash, signature_verified FROM tombstones"
    " WHERE recipient = ? AND sender = ? AND message_id = ?"
)


# `seen` of `key_write` when this request did not read the address's key.
UNSEEN = object()


@functools.cache
def pg(sql: str) -> str:
    """`sql` for psycopg: `%s` placeholders (a literal `%` doubled first)."""
    return sql.replace("%", "%%").replace("?", "%s")


def key_write(
    email: str, armored: str, fingerprint: str, now: int, seen: object
) -> tuple[str, tuple[Any, ...]]:
    """The write that registers or replaces the key of `email`.

    `seen` is the key text `get_key` read in this request (None: no key), or `UNSEEN`. A key
    that was read is replaced only if it is still that one, and an address read as free is
    registered only if it still is: of two processes registering one address, the first
    wins. The write touches no row when the race was lost."""
    params = (email, armored, fingerprint, now)
    if seen is UNSEEN:
        return KEY_INSERT + KEY_UPSERT, params
    if seen is None:
        return KEY_INSERT + " ON CONFLICT DO NOTHING", params
    return KEY_INSERT + KEY_UPSERT + " WHERE keys.armored = ?", (*params, seen)


class _Rows(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> Any: ...


class SharedQueries:
    """What `Store` and `PostgresStore` do identically, over their own connection."""

    # (messages, bytes) of a mailbox: counted, unless the backend keeps them (PostgreSQL).
    _usage_query = MAILBOX_USAGE

    _counts: dict[str, int]
    _sizes: dict[str, int]
    _seen_keys: dict[str, str | None]
    _keys: dict[str, KeyRecord]
    _accounts: dict[str, AccountRecord]

    @staticmethod
    def _sql(sql: str) -> str:
        """`sql` in this backend's placeholder style (SQLite's `?` as written)."""
        return sql

    def _read(self, sql: str, params: Sequence[Any] = ()) -> Any:
        raise NotImplementedError

    def _write(self, sql: str, params: Sequence[Any] = ()) -> Any:
        raise NotImplementedError

    def _sync_caches(self) -> None:
        """Drop caches another connection's commit made stale (where the engine can tell)."""

    def get_key(self, email: str) -> KeyRecord | None:
        raise NotImplementedError

    def _key_written(self, record: KeyRecord) -> None:
        raise NotImplementedError

    if TYPE_CHECKING:  # the backend's (Store has it from AccountStore, after this class)

        def account(self, email: str) -> AccountRecord: ...
        def add_message(self, **fields: Any) -> int: ...

    def set_account(
        self,
        email: str,
        *,
        disabled: bool = _UNSET,
        max_messages: int | None = _UNSET,
        max_bytes: int | None = _UNSET,
    ) -> AccountRecord:
        """Change an account's settings; what is not given stays as it is."""
        current = self.account(email)
        record = AccountRecord(
            email,
            current.disabled if disabled is _UNSET else disabled,
            current.max_messages if max_messages is _UNSET else max_messages,
            current.max_bytes if max_bytes is _UNSET else max_bytes,
        )
        self._write(
            self._sql(ACCOUNT_UPSERT),
            (email, record.disabled, record.max_messages, record.max_bytes),
        )
        self._accounts[email] = record
        return record

    # ------------------------------------------------------------------ keys

    def put_key(self, email: str, armored: str, fingerprint: str, now: int) -> None:
        """Register or replace the key of `email`.

        If this store read the address's key in this request (`get_key`), only that key is
        replaced: when another process registered or replaced it meanwhile, this raises
        KEY_EXISTS (or does nothing when the very same key is there already).
        """
        seen = self._seen_keys.pop(email, UNSEEN)
        sql, params = key_write(email, armored, fingerprint, now, seen)
        cur: _Rows = self._write(self._sql(sql), params)
        if cur.rowcount == 0:
            self._keys.pop(email, None)
            current = self.get_key(email)
            if current is None or current.armored != armored:
                raise key_changed_meanwhile(email)
            return
        self._key_written(KeyRecord(email, armored, fingerprint, now))

    # ------------------------------------------------------------------ messages

    def find_message_hash(
        self, recipient: str, message_id: str, sender: str | None = None
    ) -> str | None:
        sql = "SELECT message_hash FROM messages WHERE recipient = ? AND message_id = ?"
        params: tuple[str, ...] = (recipient, message_id)
        if sender is not None:
            sql += " AND sender = ?"
            params += (sender,)
        row = self._read(self._sql(sql), params).fetchone()
        return str(row[0]) if row else None

    def stage_message(self, **fields: Any) -> Callable[[], None] | None:
        """`add_message`, except that where the backend pipelines writes (PostgreSQL) a
        refusal is raised only by the returned `confirm()`, which the caller calls before the
        commit; where it does not (None returned), at once."""
        self.add_message(**fields)
        return None

    def is_spent(self, stamp_key: str) -> bool:
        return self._read(self._sql(IS_SPENT), (stamp_key,)).fetchone() is not None

    def _refuse_taken_id(
        self, recipient: str, message_id: str, sender: str, message_hash: str, stamp_key: str
    ) -> NoReturn:
        """The message was not stored (its id was taken): give the stamp back and raise the
        answer the sender gets."""
        self._write(self._sql(STAMP_UNSPEND), (stamp_key,))
        found = self.find_message_hash(recipient, message_id, sender)
        raise message_id_taken(found == message_hash)

    def _stored(self, recipient: str, size: int) -> None:
        if recipient in self._counts:
            self._counts[recipient] += 1
            self._sizes[recipient] += size

    def count_messages(self, recipient: str) -> int:
        return self.mailbox_usage(recipient)[0]

    def mailbox_usage(self, recipient: str) -> tuple[int, int]:
        """(messages, bytes of stored packets) in a mailbox, staged writes included."""
        self._sync_caches()
        count = self._counts.get(recipient)
        if count is None:
            row = self._read(self._sql(self._usage_query), (recipient,)).fetchone()
            if len(self._counts) >= 100_000:
                self._counts.clear()
                self._sizes.clear()
            count = self._counts[recipient] = int(row[0])
            self._sizes[recipient] = int(row[1])
        return count, self._sizes[recipient]

    def list_messages(
        self, recipient: str, after_seq: int, limit: int, max_bytes: int | None = None
    ) -> tuple[list[StoredMessage], bool]:
        """Up to `limit` intact messages after `after_seq` (see `storage.page_messages`)."""

        def fetch(position: int, n: int) -> Sequence[tuple[int, str, str]]:
            rows = self._read(self._sql(MAILBOX_PAGE), (recipient, position, n)).fetchall()
            return rows  # type: ignore[no-any-return]

        return page_messages(fetch, recipient, after_seq, limit, max_bytes)

    def _deleted(self, recipient: str, count: int, freed: int) -> None:
        if recipient in self._counts:
            self._counts[recipient] -= count
            self._sizes[recipient] -= freed

    def _purge_stamps(self, now: int) -> int:
        return int(self._write(self._sql(PURGE_STAMPS), (now,)).rowcount)
