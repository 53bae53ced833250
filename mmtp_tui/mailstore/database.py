"""The store's SQLite file: its schema, the upgrades of an older file, and the one locked
connection every table's methods go through."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    message_id TEXT NOT NULL,
    direction TEXT NOT NULL,
    folder TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL DEFAULT '',
    body TEXT NOT NULL DEFAULT '',
    timestamp INTEGER NOT NULL DEFAULT 0,
    received_at INTEGER NOT NULL DEFAULT 0,
    read INTEGER NOT NULL DEFAULT 0,
    encrypted INTEGER NOT NULL DEFAULT 0,
    decrypted INTEGER NOT NULL DEFAULT 1,
    integrity_ok INTEGER NOT NULL DEFAULT 1,
    signature TEXT NOT NULL DEFAULT 'unsigned',
    signer_fingerprint TEXT,
    problem TEXT,
    in_reply_to TEXT,
    refs TEXT NOT NULL DEFAULT '[]',
    thread TEXT NOT NULL,
    attachments TEXT NOT NULL DEFAULT '[]',
    packet TEXT NOT NULL DEFAULT '{}',
    UNIQUE (account, message_id, direction)
);
CREATE INDEX IF NOT EXISTS messages_folder ON messages (account, folder, timestamp);
CREATE INDEX IF NOT EXISTS messages_thread ON messages (account, thread);
CREATE TABLE IF NOT EXISTS drafts (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    recipient TEXT NOT NULL DEFAULT '',
    subject TEXT NOT NULL DEFAULT '',
    body TEXT NOT NULL DEFAULT '',
    in_reply_to TEXT,
    refs TEXT NOT NULL DEFAULT '[]',
    updated INTEGER NOT NULL,
    outgoing TEXT
);
CREATE TABLE IF NOT EXISTS cursors (
    account TEXT PRIMARY KEY,
    cursor TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    outgoing TEXT NOT NULL,
    packet TEXT,
    created INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    recipients TEXT
);
CREATE TABLE IF NOT EXISTS deliveries (
    account TEXT NOT NULL,
    message_id TEXT NOT NULL,
    address TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'to',
    state TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    updated INTEGER NOT NULL,
    PRIMARY KEY (account, message_id, address)
);
CREATE TABLE IF NOT EXISTS user_folders (
    account TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (account, name)
);
CREATE TABLE IF NOT EXISTS server_facts (
    account TEXT PRIMARY KEY,
    difficulty INTEGER NOT NULL
);
"""


class Database:
    """Thread-safe (one connection behind a lock): workers and the UI share it."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(drafts)")}
        if "outgoing" not in columns:  # a store from before drafts kept the whole Outgoing
            self._db.execute("ALTER TABLE drafts ADD COLUMN outgoing TEXT")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(messages)")}
        if "flagged" not in columns:  # a store from before flags
            self._db.execute("ALTER TABLE messages ADD COLUMN flagged INTEGER NOT NULL DEFAULT 0")
        if "unreadable" not in columns:  # a store from before unreadable messages were kept
            self._db.execute(
                "ALTER TABLE messages ADD COLUMN unreadable INTEGER NOT NULL DEFAULT 0"
            )
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        if "recipients" not in columns:  # a store from before the Outbox took several
            self._db.execute("ALTER TABLE outbox ADD COLUMN recipients TEXT")
        path.chmod(0o600)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _rows(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _exec(self, sql: str, args: tuple = ()) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount
