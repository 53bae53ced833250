"""What the store keeps about accounts besides keys and mail (SPEC §5, §11): per-account
settings (disabled, quota), invite tokens, held and reserved names, tombstones of deleted
messages, and the one-off upgrade of a revision-1 message table.

A mixin of `store.Store`: it shares the store's connection, transaction and caches.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

log = logging.getLogger("mmtp.store")

# The message table (store.py), here as a template so the upgrade below can build a copy.
MESSAGES_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient TEXT NOT NULL,
    sender TEXT NOT NULL DEFAULT '',
    message_id TEXT NOT NULL,
    message_hash TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    packet TEXT NOT NULL,
    checksum TEXT NOT NULL,
    UNIQUE (recipient, sender, message_id)
);
"""
ACCOUNT_SCHEMA = """
CREATE TABLE IF NOT EXISTS tombstones (
    recipient TEXT NOT NULL,
    sender TEXT NOT NULL,
    message_id TEXT NOT NULL,
    message_hash TEXT NOT NULL,
    signature_verified INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (recipient, sender, message_id)
);
CREATE INDEX IF NOT EXISTS tombstones_by_expiry ON tombstones (expires_at);
CREATE TABLE IF NOT EXISTS accounts (
    email TEXT PRIMARY KEY,
    disabled INTEGER NOT NULL DEFAULT 0,
    max_messages INTEGER,
    max_bytes INTEGER
);
CREATE TABLE IF NOT EXISTS invites (
    digest TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS held_names (
    email TEXT PRIMARY KEY,
    until INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reserved_names (
    name TEXT PRIMARY KEY
);
"""

# Revision 1 kept neither the sender nor the size of a message, and "already stored" was keyed
# by (recipient, messageId) alone: the table is rebuilt, keeping every sequence number (a
# client's cursor must never see one reused).
_COPY_MESSAGES = """
INSERT INTO messages_v2 (seq, recipient, sender, message_id, message_hash, received_at, size,
    packet, checksum)
SELECT seq, recipient,
    lower(coalesce(CASE WHEN json_valid(packet) THEN json_extract(packet, '$.sender') END, '')),
    message_id, message_hash, received_at, length(CAST(packet AS BLOB)), packet, checksum
FROM messages;
DROP TABLE messages;
ALTER TABLE messages_v2 RENAME TO messages;
CREATE INDEX IF NOT EXISTS messages_by_recipient ON messages (recipient, seq)
"""


def upgrade_messages(db: sqlite3.Connection) -> None:
    """Rebuild a revision-1 message table (no `sender`, no `size`) in one transaction."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
    if "sender" in columns:
        return
    log.info("upgrading the message table (sender, size, tombstone keys)")
    db.execute("BEGIN IMMEDIATE")
    try:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").fetchone()
        db.execute(MESSAGES_TABLE.format(name="messages_v2"))
        for statement in _COPY_MESSAGES.split(";"):
            db.execute(statement)
        if row is not None:
            db.execute(
                "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'messages'", (row[0],)
            )
        db.execute("COMMIT")
    except sqlite3.Error:
        db.execute("ROLLBACK")
        raise


@dataclass(frozen=True)
class AccountRecord:
    email: str
    disabled: bool = False
    # None: the server's configured default applies.
    max_messages: int | None = None
    max_bytes: int | None = None


_UNSET: Any = object()


class AccountStore:
    if TYPE_CHECKING:
        _db: sqlite3.Connection
        _accounts: dict[str, AccountRecord]

        def _write(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor: ...
        def _sync_caches(self) -> None: ...
        def _clear_caches(self) -> None: ...
        def mailbox_usage(self, recipient: str) -> tuple[int, int]: ...

    # ------------------------------------------------------------------ delivered messages

    def find_delivered(
        self, recipient: str, sender: str, message_id: str
    ) -> tuple[str, bool] | None:
        """(messageHash, signatureVerified) of a message stored or deleted (a tombstone) for
        this recipient from this sender under this id (SPEC §5), or None."""
        row = self._db.execute(
            "SELECT message_hash, CASE WHEN json_valid(packet)"
            " THEN json_extract(packet, '$.meta.signatureVerified') END"
            " FROM messages WHERE recipient = ? AND sender = ? AND message_id = ?",
            (recipient, sender, message_id),
        ).fetchone()
        if row is None:
            row = self._db.execute(
                "SELECT message_hash, signature_verified FROM tombstones"
                " WHERE recipient = ? AND sender = ? AND message_id = ?",
                (recipient, sender, message_id),
            ).fetchone()
        return (str(row[0]), bool(row[1])) if row else None

    # ------------------------------------------------------------------ account settings

    def account(self, email: str) -> AccountRecord:
        """Settings of an address (defaults when the operator set none). Cached: every SEND
        reads its recipient's."""
        self._sync_caches()
        record = self._accounts.get(email)
        if record is None:
            row = self._db.execute(
                "SELECT disabled, max_messages, max_bytes FROM accounts WHERE email = ?",
                (email,),
            ).fetchone()
            record = AccountRecord(email, bool(row[0]), row[1], row[2]) if row else None
            record = record or AccountRecord(email)
            if len(self._accounts) >= 100_000:
                self._accounts.clear()
            self._accounts[email] = record
        return record

    def list_accounts(self) -> list[dict[str, Any]]:
        """Every address with a key or settings: key, state, quota and usage (for mmtp-admin)."""
        rows = self._db.execute(
            "SELECT e.email, k.fingerprint, k.registered_at, a.disabled, a.max_messages,"
            " a.max_bytes FROM (SELECT email FROM keys UNION SELECT email FROM accounts) e"
            " LEFT JOIN keys k ON k.email = e.email LEFT JOIN accounts a ON a.email = e.email"
            " ORDER BY e.email"
        ).fetchall()
        found = []
        for email, fingerprint, registered_at, disabled, max_messages, max_bytes in rows:
            count, size = self.mailbox_usage(email)
            found.append(
                {
                    "email": email,
                    "fingerprint": fingerprint,
                    "registeredAt": registered_at,
                    "disabled": bool(disabled),
                    "messages": count,
                    "bytes": size,
                    "maxMessages": max_messages,
                    "maxBytes": max_bytes,
                }
            )
        return found

    def delete_key(self, email: str) -> bool:
        cur = self._write("DELETE FROM keys WHERE email = ?", (email,))
        self._clear_caches()
        return cur.rowcount > 0

    def delete_account(self, email: str, *, hold_until: int) -> int:
        """Remove an account's mailbox, key, settings and invites; hold its name. Returns how
        many messages were deleted."""
        deleted = self._write("DELETE FROM messages WHERE recipient = ?", (email,)).rowcount
        for table in ("keys", "accounts", "invites"):
            self._write(f"DELETE FROM {table} WHERE email = ?", (email,))
        self._write(
            "INSERT OR REPLACE INTO held_names (email, until) VALUES (?, ?)", (email, hold_until)
        )
        self._clear_caches()
        return deleted

    # ------------------------------------------------------------------ names

    def held_until(self, email: str, now: int) -> int | None:
        row = self._db.execute(
            "SELECT until FROM held_names WHERE email = ? AND until > ?", (email, now)
        ).fetchone()
        return int(row[0]) if row else None

    def held_names(self, now: int) -> list[tuple[str, int]]:
        rows = self._db.execute(
            "SELECT email, until FROM held_names WHERE until > ? ORDER BY email", (now,)
        )
        return [(str(e), int(u)) for e, u in rows]

    def release_name(self, email: str) -> bool:
        return self._write("DELETE FROM held_names WHERE email = ?", (email,)).rowcount > 0

    def reserved_names(self) -> list[str]:
        return [str(r[0]) for r in self._db.execute("SELECT name FROM reserved_names ORDER BY 1")]

    def add_reserved_name(self, name: str) -> bool:
        cur = self._write("INSERT OR IGNORE INTO reserved_names (name) VALUES (?)", (name,))
        return cur.rowcount > 0

    def remove_reserved_name(self, name: str) -> bool:
        return self._write("DELETE FROM reserved_names WHERE name = ?", (name,)).rowcount > 0

    # ------------------------------------------------------------------ invites

    def add_invite(self, digest: str, email: str, *, now: int, expires_at: int) -> None:
        self._write(
            "INSERT INTO invites (digest, email, created_at, expires_at) VALUES (?, ?, ?, ?)",
            (digest, email, now, expires_at),
        )

    def invite_is_valid(self, digest: str, email: str, now: int) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM invites WHERE digest = ? AND email = ? AND expires_at > ?",
            (digest, email, now),
        ).fetchone()
        return row is not None

    def spend_invite(self, digest: str) -> None:
        """Spent in the registration's transaction: a failed commit gives the invite back."""
        self._write("DELETE FROM invites WHERE digest = ?", (digest,))

    def list_invites(self, now: int) -> list[tuple[str, int]]:
        rows = self._db.execute(
            "SELECT email, expires_at FROM invites WHERE expires_at > ? ORDER BY email", (now,)
        )
        return [(str(e), int(x)) for e, x in rows]

    def purge_expired_names(self, now: int) -> int:
        purged = self._write("DELETE FROM held_names WHERE until <= ?", (now,)).rowcount
        return purged + self._write("DELETE FROM invites WHERE expires_at <= ?", (now,)).rowcount
