"""Durable server storage, the default backend: one SQLite file in WAL mode (messages, keys,
spent stamps). `store_postgres` is the other backend; `storage.Storage` is what both offer.

Writes are staged in an open transaction and made durable by `commit()`, which
`group_commit.GroupCommit` calls once per loop turn: every SEND answered in that turn shares
one commit and one fsync, and no answer leaves before its commit is on disk. Every stored
message carries a checksum of its own bytes, so a damaged row is detected, never served.

Several server processes may share the file: SQLite's write lock orders their turns, the
conditional writes make the loser of a race get the error it would have got a moment later,
and `refresh()` drops the caches when `PRAGMA data_version` says another process committed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .storage import (
    KeyRecord,
    StoredMessage,
    StoreError,
    check_schema_version,
    encode_packet,
    key_changed_meanwhile,
    message_id_taken,
    page_messages,
    stamp_replayed,
)

__all__ = ["KeyRecord", "Store", "StoreError", "StoredMessage"]

log = logging.getLogger("mmtp.store")
# How long a write waits for another process's turn to commit before it gives up.
BUSY_TIMEOUT_SECONDS = 30.0

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    email TEXT PRIMARY KEY,
    armored TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    registered_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient TEXT NOT NULL,
    message_id TEXT NOT NULL,
    message_hash TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    packet TEXT NOT NULL,
    checksum TEXT NOT NULL,
    UNIQUE (recipient, message_id)
);
CREATE INDEX IF NOT EXISTS messages_by_recipient ON messages (recipient, seq);
CREATE TABLE IF NOT EXISTS spent_stamps (
    stamp TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS spent_by_expiry ON spent_stamps (expires_at);
"""


def _statements(script: str) -> list[str]:
    """The statements of a script, one by one (executescript would commit our BEGIN first);
    sqlite3.complete_statement keeps a trigger's body in one piece."""
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        statements.append(pending.strip())
    return statements


def _make_private(path: Path) -> None:
    """Create the database file 0600, or make an existing one (and its -wal and -shm) 0600
    with a warning: stored mail is for its recipients only. SQLite creates -wal and -shm
    with the database file's mode."""
    if not path.exists():
        # On failure sqlite3 says why it cannot open it, in its own words, just below.
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return
    for item in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = item.stat().st_mode & 0o777
            if mode & 0o077:
                item.chmod(0o600)
                log.warning("%s was mode %o (other users could read mail); now 0600", item, mode)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("%s is readable by other users and could not be made 0600: %s", item, exc)


class Store:
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
            self._migrate()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database {path}: {exc}") from exc
        self._data_version = self._version()
        self._in_tx = False
        # How many times staged writes were thrown away: group_commit compares it to know
        # whether the answers it holds still stand.
        self._rollbacks = 0
        # Mailbox sizes as this connection sees them (uncommitted writes included), so the
        # MAILBOX_FULL check on every SEND does not count the whole mailbox each time.
        self._counts: dict[str, int] = {}
        self._keys: dict[str, KeyRecord] = {}
        # The key text each address had when this store last read it (None: no key), so
        # put_key replaces only that: two processes registering one address, the first wins.
        self._seen_keys: dict[str, str | None] = {}

    def _migrate(self) -> None:
        # Under the write lock: two processes starting together create the schema once.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            found = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            check_schema_version(found, SCHEMA_VERSION, str(self.path))
            for statement in _statements(_SCHEMA):
                self._db.execute(statement)
            if found < SCHEMA_VERSION:
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _version(self) -> int:
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def refresh(self) -> None:
        """Forget cached keys and counts if another process committed since we last looked.

        `PRAGMA data_version` changes exactly when another connection commits; it costs a
        few microseconds, no I/O. Inside our own write transaction nobody else can commit.
        """
        self._seen_keys.clear()
        if self._in_tx:
            return
        try:
            version = self._version()
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc
        if version != self._data_version:
            self._data_version = version
            self._counts.clear()
            self._keys.clear()

    # ------------------------------------------------------------------ transactions

    @property
    def pending(self) -> bool:
        return self._in_tx

    @property
    def rollbacks(self) -> int:
        return self._rollbacks

    def _write(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        try:
            if not self._in_tx:
                # Waits (up to the busy timeout) while another process's turn holds the lock.
                self._db.execute("BEGIN IMMEDIATE")
                self._in_tx = True
                version = self._version()
                if version != self._data_version:
                    # Another process committed between our reads and this write: counts
                    # must be taken again inside the transaction.
                    self._data_version = version
                    self._counts.clear()
                    self._keys.clear()
            return self._db.execute(sql, tuple(params))
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc

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
            self._counts.clear()
            self._keys.clear()
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
        record = self._keys.get(email)
        if record is None:
            row = self._read(
                "SELECT email, armored, fingerprint, registered_at FROM keys WHERE email = ?",
                (email,),
            ).fetchone()
            if row is not None:
                record = KeyRecord(*row)
                if len(self._keys) >= 100_000:
                    self._keys.clear()
                self._keys[email] = record
        if len(self._seen_keys) >= 1024:
            self._seen_keys.clear()
        self._seen_keys[email] = record.armored if record else None
        return record

    def put_key(self, email: str, armored: str, fingerprint: str, now: int) -> None:
        """Register or replace the key of `email`.

        If this store read the address's key in this request (`get_key`), only that key is
        replaced: when another process registered or replaced it meanwhile, this raises
        KEY_EXISTS (or does nothing when the very same key is there already).
        """
        params = (email, armored, fingerprint, now)
        insert = "INSERT INTO keys (email, armored, fingerprint, registered_at) VALUES (?, ?, ?, ?)"
        update = (
            " ON CONFLICT (email) DO UPDATE SET armored = excluded.armored,"
            " fingerprint = excluded.fingerprint, registered_at = excluded.registered_at"
        )
        unseen = object()
        seen = self._seen_keys.pop(email, unseen)
        if seen is unseen:
            self._write(insert + update, params)
        else:
            if seen is None:
                cur = self._write(insert + " ON CONFLICT DO NOTHING", params)
            else:
                cur = self._write(insert + update + " WHERE keys.armored = ?", (*params, seen))
            if cur.rowcount == 0:
                self._key_race_lost(email, armored)
                return
        self._keys[email] = KeyRecord(email, armored, fingerprint, now)

    def _key_race_lost(self, email: str, armored: str) -> None:
        self._keys.pop(email, None)
        current = self.get_key(email)
        if current is None or current.armored != armored:
            raise key_changed_meanwhile(email)

    # ------------------------------------------------------------------ messages

    def _read(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, tuple(params))
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc

    def find_message_hash(self, recipient: str, message_id: str) -> str | None:
        row = self._read(
            "SELECT message_hash FROM messages WHERE recipient = ? AND message_id = ?",
            (recipient, message_id),
        ).fetchone()
        return row[0] if row else None

    def is_spent(self, stamp_key: str) -> bool:
        row = self._read("SELECT 1 FROM spent_stamps WHERE stamp = ?", (stamp_key,))
        return row.fetchone() is not None

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
    ) -> int:
        """Store a message and spend its stamp in the same transaction (SPEC §4).

        Another process may have spent the stamp or stored the messageId since this one
        looked: then nothing is written and the error the look would have found is raised.
        """
        text, digest = encode_packet(packet)
        cur = self._write(
            "INSERT INTO spent_stamps (stamp, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (stamp_key, stamp_expires_at),
        )
        if cur.rowcount == 0:
            raise stamp_replayed()
        cur = self._write(
            "INSERT INTO messages (recipient, message_id, message_hash, received_at, packet,"
            " checksum) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (recipient, message_id, message_hash, received_at, text, digest),
        )
        if cur.rowcount == 0:
            self._write("DELETE FROM spent_stamps WHERE stamp = ?", (stamp_key,))
            raise message_id_taken(self.find_message_hash(recipient, message_id) == message_hash)
        if recipient in self._counts:
            self._counts[recipient] += 1
        return int(cur.lastrowid or 0)

    def count_messages(self, recipient: str) -> int:
        count = self._counts.get(recipient)
        if count is None:
            row = self._read("SELECT COUNT(*) FROM messages WHERE recipient = ?", (recipient,))
            count = int(row.fetchone()[0])
            if len(self._counts) >= 100_000:
                self._counts.clear()
            self._counts[recipient] = count
        return count

    def list_messages(
        self, recipient: str, after_seq: int, limit: int, max_bytes: int | None = None
    ) -> tuple[list[StoredMessage], bool]:
        """Up to `limit` intact messages after `after_seq` (see `storage.page_messages`)."""

        def fetch(position: int, n: int) -> Sequence[tuple[int, str, str]]:
            return self._read(
                "SELECT seq, packet, checksum FROM messages WHERE recipient = ? AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (recipient, position, n),
            ).fetchall()

        return page_messages(fetch, recipient, after_seq, limit, max_bytes)

    def delete_messages(self, recipient: str, message_ids: list[str]) -> int:
        deleted = 0
        for message_id in dict.fromkeys(message_ids):
            cur = self._write(
                "DELETE FROM messages WHERE recipient = ? AND message_id = ?",
                (recipient, message_id),
            )
            deleted += cur.rowcount
        if recipient in self._counts:
            self._counts[recipient] -= deleted
        return deleted

    def purge_expired_stamps(self, now: int) -> int:
        cur = self._write("DELETE FROM spent_stamps WHERE expires_at < ?", (now,))
        return cur.rowcount
