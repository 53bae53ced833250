"""Durable server storage: one SQLite file in WAL mode (messages, keys, spent stamps).

Writes are staged in an open transaction and made durable by `commit()`, which
`group_commit.GroupCommit` calls once per loop turn: every SEND answered in that turn shares
one commit and one fsync, and no answer leaves before its commit is on disk. Every stored
message carries a checksum of its own bytes, so a damaged row is detected, never served.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .store_queue import QUEUE_SCHEMA, QueueMixin

log = logging.getLogger("mmtp.store")

SCHEMA_VERSION = 2
_SCHEMA = (
    """
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
    + QUEUE_SCHEMA
)


def _checksum(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
    """The database could not do what was asked (disk full, read-only, damaged)."""


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


class Store(QueueMixin):
    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _make_private(path)
        try:
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: in WAL mode every COMMIT fsyncs the log, which is what "durable" means.
            self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'OFF'}")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database {path}: {exc}") from exc
        self._in_tx = False
        # How many times staged writes were thrown away: group_commit compares it to know
        # whether the answers it holds still stand.
        self._rollbacks = 0
        # Mailbox sizes as this connection sees them (uncommitted writes included), so the
        # MAILBOX_FULL check on every SEND does not count the whole mailbox each time.
        self._counts: dict[str, int] = {}
        self._keys: dict[str, KeyRecord] = {}

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
                self._db.execute("BEGIN IMMEDIATE")
                self._in_tx = True
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
        if record is not None:
            return record
        row = self._db.execute(
            "SELECT email, armored, fingerprint, registered_at FROM keys WHERE email = ?",
            (email,),
        ).fetchone()
        if row is None:
            return None
        record = KeyRecord(*row)
        if len(self._keys) >= 100_000:
            self._keys.clear()
        self._keys[email] = record
        return record

    def put_key(self, email: str, armored: str, fingerprint: str, now: int) -> None:
        self._write(
            "INSERT INTO keys (email, armored, fingerprint, registered_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (email) DO UPDATE SET armored = excluded.armored,"
            " fingerprint = excluded.fingerprint, registered_at = excluded.registered_at",
            (email, armored, fingerprint, now),
        )
        self._keys[email] = KeyRecord(email, armored, fingerprint, now)

    # ------------------------------------------------------------------ messages

    def find_message_hash(self, recipient: str, message_id: str) -> str | None:
        row = self._db.execute(
            "SELECT message_hash FROM messages WHERE recipient = ? AND message_id = ?",
            (recipient, message_id),
        ).fetchone()
        return row[0] if row else None

    def is_spent(self, stamp_key: str) -> bool:
        row = self._db.execute("SELECT 1 FROM spent_stamps WHERE stamp = ?", (stamp_key,))
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
        """Store a message and spend its stamp in the same transaction (SPEC §4)."""
        text = json.dumps(packet, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        self._write(
            "INSERT INTO spent_stamps (stamp, expires_at) VALUES (?, ?)",
            (stamp_key, stamp_expires_at),
        )
        cur = self._write(
            "INSERT INTO messages (recipient, message_id, message_hash, received_at, packet,"
            " checksum) VALUES (?, ?, ?, ?, ?, ?)",
            (recipient, message_id, message_hash, received_at, text, _checksum(text)),
        )
        if recipient in self._counts:
            self._counts[recipient] += 1
        return int(cur.lastrowid or 0)

    def count_messages(self, recipient: str) -> int:
        count = self._counts.get(recipient)
        if count is None:
            row = self._db.execute(
                "SELECT COUNT(*) FROM messages WHERE recipient = ?", (recipient,)
            )
            count = int(row.fetchone()[0])
            if len(self._counts) >= 100_000:
                self._counts.clear()
            self._counts[recipient] = count
        return count

    def list_messages(
        self, recipient: str, after_seq: int, limit: int, max_bytes: int | None = None
    ) -> tuple[list[StoredMessage], bool]:
        """Up to `limit` intact messages after `after_seq`, and whether rows remain after them.

        Damaged rows are skipped and do not take a place in the page, so a page is empty
        only when nothing intact is left: a client paging until `more` is false finishes
        even when damaged rows fill a whole page. With `max_bytes`, the page also stops
        before the stored packets would exceed that size (it always holds at least one).
        """
        result: list[StoredMessage] = []
        position = after_seq
        size = 0
        while True:
            wanted = limit - len(result)
            rows = self._db.execute(
                "SELECT seq, packet, checksum FROM messages WHERE recipient = ? AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (recipient, position, wanted + 1),
            ).fetchall()
            for seq, text, checksum in rows[:wanted]:
                if max_bytes is not None and result and size + len(text) > max_bytes:
                    return result, True
                position = seq
                if _checksum(text) != checksum:
                    log.error("message row %d for %s is damaged; not serving it", seq, recipient)
                    continue
                size += len(text)
                result.append(StoredMessage(seq, json.loads(text)))
            if len(rows) <= wanted:
                return result, False
            if len(result) == limit:
                return result, True

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
