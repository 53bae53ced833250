"""Durable server storage: one SQLite file in WAL mode (messages, keys, spent stamps,
tombstones of deleted messages; accounts, invites and names in `store_accounts`).

Writes are staged in an open transaction and made durable by `commit()`, which
`group_commit.GroupCommit` calls once per loop turn: every SEND answered in that turn shares
one commit and one fsync, and no answer leaves before its commit is on disk. Every stored
message carries a checksum of its own bytes, so a damaged row is detected, never served.

The in-memory caches (keys, mailbox sizes, account settings) are this connection's view. The
operator's `mmtp-admin` writes through another connection while the server runs; SQLite's
`PRAGMA data_version` changes when another connection commits, and it is checked (a few
microseconds) before a cache is used, so the server sees every admin change at once. The
same holds for other server processes sharing the file (`--workers`): SQLite's write lock
orders their turns, and the conditional writes give the loser of a race the error it would
have got a moment later (POW_REPLAYED, KEY_EXISTS). `store_postgres` is the other backend;
the queries both run alike are in `store_sql`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .storage import (
    KeyRecord,
    StoredMessage,
    StoreError,
    account_gone,
    check_schema_version,
    deleted_already,
    mailbox_full,
    stamp_replayed,
)
from .storage import checksum as _checksum
from .store_accounts import (
    ACCOUNT_SCHEMA,
    MESSAGES_TABLE,
    AccountRecord,
    AccountStore,
    upgrade_messages,
)
from .store_files import make_private as _make_private
from .store_queue import QueueMixin, upgrade_queue
from .store_sql import MESSAGE_INSERT, NAME_HELD, STAMP_SPEND, TOMBSTONED, SharedQueries

log = logging.getLogger("mmtp.store")

SCHEMA_VERSION = 4  # 3: the outbound queue (store_queue); 4: its claim leases
# The registered keys kept in memory hold at most this much armor.
KEY_CACHE_BYTES = 32 * 1024 * 1024
_SCHEMA = (
    MESSAGES_TABLE.format(name="messages")
    + """
CREATE TABLE IF NOT EXISTS keys (
    email TEXT PRIMARY KEY,
    armored TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    registered_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_recipient ON messages (recipient, seq);
CREATE TABLE IF NOT EXISTS spent_stamps (
    stamp TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS spent_by_expiry ON spent_stamps (expires_at);
"""
)


__all__ = ["KeyRecord", "Store", "StoreError", "StoredMessage", "stored_text"]

# How long a write waits for another process's turn to commit before it gives up.
BUSY_TIMEOUT_SECONDS = 30.0


class Store(SharedQueries, AccountStore, QueueMixin):
    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _make_private(path)
        try:
            self._db = sqlite3.connect(
                str(path),
                isolation_level=None,
                check_same_thread=False,
                timeout=BUSY_TIMEOUT_SECONDS,
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: in WAL mode every COMMIT fsyncs the log, which is what "durable" means.
            self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'OFF'}")
            self._db.execute("PRAGMA foreign_keys=ON")
            found = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            check_schema_version(found, SCHEMA_VERSION, str(path))
            self._db.executescript(_SCHEMA)
            upgrade_messages(self._db)
            self._db.executescript(ACCOUNT_SCHEMA)
            upgrade_queue(self._db)
            if self._db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database {path}: {exc}") from exc
        self._in_tx = False
        # How many times staged writes were thrown away: group_commit compares it to know
        # whether the answers it holds still stand.
        self._rollbacks = 0
        self._statements = 0
        # Mailbox sizes as this connection sees them (uncommitted writes included), so the
        # MAILBOX_FULL check on every SEND does not count the whole mailbox each time.
        self._counts: dict[str, int] = {}
        self._sizes: dict[str, int] = {}
        self._keys: dict[str, KeyRecord] = {}
        self._key_bytes = 0
        self._accounts: dict[str, AccountRecord] = {}
        # The key text each address had when this store last read it (None: no key), so
        # put_key replaces only that: two processes registering one address, the first wins.
        self._seen_keys: dict[str, str | None] = {}
        self._data_version = self._read_data_version()

    def refresh(self) -> None:
        """Start a request: which keys it read starts empty (see put_key)."""
        self._seen_keys.clear()

    def look_again(self) -> None:
        """Whatever another process committed before now is seen from here on."""
        if not self._in_tx:
            self._sync_caches()

    # ------------------------------------------------------------------ caches

    def _read_data_version(self) -> int:
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def _sync_caches(self) -> None:
        """Forget the caches when another connection (mmtp-admin) committed since last time."""
        try:
            version = self._read_data_version()
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc
        if version != self._data_version:
            self._data_version = version
            self._clear_caches()

    def _clear_caches(self) -> None:
        self._counts.clear()
        self._sizes.clear()
        self._keys.clear()
        self._key_bytes = 0
        self._accounts.clear()

    # ------------------------------------------------------------------ transactions

    @property
    def pending(self) -> bool:
        return self._in_tx

    @property
    def rollbacks(self) -> int:
        return self._rollbacks

    @property
    def statements(self) -> int:
        return self._statements

    def _begin(self) -> None:
        if not self._in_tx:
            # Waits (up to the busy timeout) while another process's turn holds the lock.
            self._db.execute("BEGIN IMMEDIATE")
            self._in_tx = True
            # Another process may have committed between our reads and this write.
            self._sync_caches()

    def _write(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        try:
            self._begin()
            self._statements += 1
            return self._db.execute(sql, tuple(params))
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc

    def _read(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, tuple(params))

    def commit(self) -> None:
        if not self._in_tx:
            return
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self.rollback()
            raise StoreError(f"commit failed: {exc}") from exc
        self._in_tx = False

    def rollback(self) -> None:
        if self._in_tx:
            self._rollbacks += 1
            self._clear_caches()
            self._seen_keys.clear()
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error as exc:
                log.warning("rollback failed: %s", exc)
            self._in_tx = False

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self._db.close()

    # ------------------------------------------------------------------ keys

    def get_key(self, email: str) -> KeyRecord | None:
        # Every SEND looks up the recipient's and the sender's key; registered keys are few
        # and change rarely, so they are kept in memory (unknown addresses are not: anyone
        # can make up as many of those as they like).
        self._sync_caches()
        record = self._keys.get(email)
        if record is None:
            row = self._db.execute(
                "SELECT email, armored, fingerprint, registered_at FROM keys WHERE email = ?",
                (email,),
            ).fetchone()
            if row is not None:
                record = KeyRecord(*row)
                self._cache_key(record)
        if len(self._seen_keys) >= 1024:
            self._seen_keys.clear()
        self._seen_keys[email] = record.armored if record else None
        return record

    def _cache_key(self, record: KeyRecord) -> None:
        # Bounded in bytes, not only in entries: 100,000 keys of 16 KiB would be 1.6 GB.
        old = self._keys.pop(record.email, None)
        if old is not None:
            self._key_bytes -= len(old.armored)
        if self._key_bytes + len(record.armored) > KEY_CACHE_BYTES or len(self._keys) >= 100_000:
            self._keys.clear()
            self._key_bytes = 0
        self._keys[record.email] = record
        self._key_bytes += len(record.armored)

    def _key_written(self, record: KeyRecord) -> None:
        self._cache_key(record)

    # ------------------------------------------------------------------ messages

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
        sender: str = "",
        text: str | None = None,
        quota: tuple[int, int] | None = None,
    ) -> int:
        """Store a message and spend its stamp in the same transaction (SPEC §4), unless
        its id was deleted already or the mailbox holds `quota` (messages, bytes) with it.

        `text` is `stored_text(packet)` when the caller has it already.
        """
        if text is None:
            text = stored_text(packet)
        size = len(text.encode("utf-8"))
        try:
            # Checked in the transaction, holding the write lock: the quota holds even with
            # other processes writing to this mailbox.
            self._begin()
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc
        if self._read(TOMBSTONED, (recipient, sender, message_id)).fetchone():
            raise deleted_already()
        # Deleted (by mmtp-admin, say) since the SEND looked its key up.
        if self._read(NAME_HELD, (recipient, received_at)).fetchone():
            raise account_gone(recipient)
        if quota is not None:
            count, used = self.mailbox_usage(recipient)
            if count >= quota[0] or used + size > quota[1]:
                raise mailbox_full(recipient)
        # Conditional: another process may have spent the stamp or stored the message since
        # this one looked; then nothing is written and the look's error is raised.
        cur = self._write(STAMP_SPEND, (stamp_key, stamp_expires_at))
        if cur.rowcount == 0:
            raise stamp_replayed()
        cur = self._write(
            MESSAGE_INSERT,
            (
                recipient,
                sender,
                message_id,
                message_hash,
                received_at,
                size,
                text,
                _checksum(text),
            ),
        )
        if cur.rowcount == 0:
            self._refuse_taken_id(recipient, message_id, sender, message_hash, stamp_key)
        self._stored(recipient, size)
        return int(cur.lastrowid or 0)

    def delete_messages(
        self, recipient: str, message_ids: list[str], *, tombstone_seconds: int | None = None
    ) -> int:
        """Delete by id. With `tombstone_seconds`, each deleted message leaves a tombstone until
        its `meta.timestamp` plus that many seconds (SPEC §5)."""
        deleted = 0
        freed = 0
        for message_id in dict.fromkeys(message_ids):
            if tombstone_seconds is not None:
                self._write(
                    "INSERT OR REPLACE INTO tombstones (recipient, sender, message_id,"
                    " message_hash, signature_verified, expires_at)"
                    " SELECT recipient, sender, message_id, message_hash,"
                    " coalesce(CASE WHEN json_valid(packet)"
                    " THEN json_extract(packet, '$.meta.signatureVerified') END, 0),"
                    " coalesce(CASE WHEN json_valid(packet)"
                    " THEN json_extract(packet, '$.meta.timestamp') END, received_at) + ?"
                    " FROM messages WHERE recipient = ? AND message_id = ?",
                    (tombstone_seconds, recipient, message_id),
                )
            rows = self._write(
                "DELETE FROM messages WHERE recipient = ? AND message_id = ? RETURNING size",
                (recipient, message_id),
            ).fetchall()
            deleted += len(rows)
            freed += sum(int(r[0]) for r in rows)
        self._deleted(recipient, deleted, freed)
        return deleted

    def purge_expired_stamps(self, now: int) -> int:
        """Forget spent stamps, tombstones, held names and invites past their time."""
        purged = self._purge_stamps(now)
        purged += self._write("DELETE FROM tombstones WHERE expires_at < ?", (now,)).rowcount
        return purged + self.purge_expired_names(now)


def stored_text(packet: dict[str, Any]) -> str:
    """A packet as stored: its length in UTF-8 bytes is what the byte quota counts."""
    return json.dumps(packet, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
