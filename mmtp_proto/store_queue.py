"""The outbound queue's table (SPEC §8.5), part of the server's one database.

A queued packet is written by `Store.enqueue` in the same transaction as the stamp it spends
and as any mail of the same turn, so the group commit that makes mail durable makes it
durable too: the kill -9 promise is the same. The packet is kept exactly as received (the
remote checks the same stamp, hash and signature).

A job ends `done` (the remote took it) or `failed` (bounced); the row stays, without its
packet, until the stamp could no longer be accepted anywhere, because at a home server "a
queued or relayed job counts as stored" for the messageId dedupe of SPEC §5.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

QUEUE_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbound (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    domain TEXT NOT NULL,
    recipient TEXT NOT NULL,
    sender TEXT NOT NULL,
    message_id TEXT NOT NULL,
    message_hash TEXT NOT NULL,
    packet TEXT NOT NULL,
    checksum TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    queued_at INTEGER NOT NULL,
    next_attempt INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    delay_notified INTEGER NOT NULL DEFAULT 0,
    last_code TEXT,
    last_error TEXT,
    last_remote TEXT,
    UNIQUE (recipient, sender, message_id)
);
CREATE INDEX IF NOT EXISTS outbound_due ON outbound (state, next_attempt);
"""

QUEUED, DONE, FAILED = "queued", "done", "failed"


@dataclass(frozen=True)
class QueuedJob:
    id: int
    domain: str
    recipient: str
    sender: str
    message_id: str
    packet: dict[str, Any]
    queued_at: int
    expires_at: int
    attempts: int
    delay_notified: bool


def _text(packet: dict[str, Any]) -> str:
    return json.dumps(packet, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class QueueMixin:
    """Queue methods of `store.Store` (its `_db` and `_write`)."""

    _db: sqlite3.Connection

    def _write(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        raise NotImplementedError

    def find_queued_hash(self, recipient: str, sender: str, message_id: str) -> str | None:
        row = self._db.execute(
            "SELECT message_hash FROM outbound WHERE recipient = ? AND sender = ?"
            " AND message_id = ?",
            (recipient, sender, message_id),
        ).fetchone()
        return row[0] if row else None

    def enqueue(
        self,
        *,
        domain: str,
        recipient: str,
        sender: str,
        message_id: str,
        message_hash: str,
        packet: dict[str, Any],
        now: int,
        expires_at: int,
        stamp_key: str,
        stamp_expires_at: int,
    ) -> int:
        """Queue a packet for relay and spend its stamp, in the current transaction."""
        self._write(
            "INSERT INTO spent_stamps (stamp, expires_at) VALUES (?, ?)",
            (stamp_key, stamp_expires_at),
        )
        text = _text(packet)
        cur = self._write(
            "INSERT INTO outbound (domain, recipient, sender, message_id, message_hash, packet,"
            " checksum, queued_at, next_attempt, expires_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                domain,
                recipient,
                sender,
                message_id,
                message_hash,
                text,
                hashlib.sha256(text.encode()).hexdigest(),
                now,
                now,
                expires_at,
            ),
        )
        return int(cur.lastrowid or 0)

    def due_jobs(self, now: int, limit: int = 500) -> list[QueuedJob]:
        rows = self._db.execute(
            "SELECT id, domain, recipient, sender, message_id, packet, checksum, queued_at,"
            " expires_at, attempts, delay_notified FROM outbound"
            " WHERE state = 'queued' AND next_attempt <= ? ORDER BY next_attempt, id LIMIT ?",
            (now, limit),
        ).fetchall()
        jobs = []
        for row in rows:
            text, checksum = row[5], row[6]
            if hashlib.sha256(text.encode()).hexdigest() != checksum:
                self._write(
                    "UPDATE outbound SET state = 'failed', last_code = 'INTERNAL',"
                    " last_error = 'the queued packet is damaged' WHERE id = ?",
                    (row[0],),
                )
                continue
            jobs.append(
                QueuedJob(
                    row[0],
                    row[1],
                    row[2],
                    row[3],
                    row[4],
                    json.loads(text),
                    *row[7:10],
                    bool(row[10]),
                )
            )
        return jobs

    def next_due(self) -> int | None:
        row = self._db.execute(
            "SELECT MIN(next_attempt) FROM outbound WHERE state = 'queued'"
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def queue_list(self) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT id, recipient, sender, message_id, state, attempts, next_attempt,"
            " last_code, last_error FROM outbound ORDER BY id"
        ).fetchall()
        keys = ("id", "recipient", "sender", "messageId", "state", "attempts", "nextAttempt")
        return [dict(zip((*keys, "lastCode", "lastError"), row, strict=True)) for row in rows]

    def finish_job(
        self, job_id: int, state: str, *, code: str | None, error: str | None, remote: str | None
    ) -> None:
        """A job is done or failed: its packet is dropped, its row kept for the dedupe."""
        self._write(
            "UPDATE outbound SET state = ?, packet = '', checksum = ?, attempts = attempts + 1,"
            " last_code = ?, last_error = ?, last_remote = ? WHERE id = ?",
            (state, hashlib.sha256(b"").hexdigest(), code, error, remote, job_id),
        )

    def retry_job(
        self,
        job_id: int,
        next_attempt: int,
        *,
        code: str | None,
        error: str | None,
        remote: str | None,
        delay_notified: bool,
    ) -> None:
        self._write(
            "UPDATE outbound SET attempts = attempts + 1, next_attempt = ?, last_code = ?,"
            " last_error = ?, last_remote = ?, delay_notified = ? WHERE id = ?",
            (next_attempt, code, error, remote, int(delay_notified), job_id),
        )

    def add_report(self, packet: dict[str, Any], now: int) -> None:
        """Store a server-made packet (a DSN, SPEC §10) in its recipient's mailbox: no stamp."""
        text = _text(packet)
        self._write(
            "INSERT INTO messages (recipient, sender, message_id, message_hash, received_at,"
            " size, packet, checksum) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                packet["recipient"],
                packet["sender"],
                packet["meta"]["messageId"],
                packet["verification"]["messageHash"],
                now,
                len(text.encode("utf-8")),
                text,
                hashlib.sha256(text.encode("utf-8")).hexdigest(),
            ),
        )

    # For the operator (SPEC §11: list, retry now, remove).

    def queue_retry_now(self, now: int, job_id: int | None = None) -> int:
        """Make one queued job (or all, with None) due now; how many."""
        if job_id is None:
            cur = self._write("UPDATE outbound SET next_attempt = ? WHERE state = 'queued'", (now,))
        else:
            cur = self._write(
                "UPDATE outbound SET next_attempt = ? WHERE state = 'queued' AND id = ?",
                (now, job_id),
            )
        return cur.rowcount

    def queue_remove(self, job_id: int) -> bool:
        """Drop a queued job without delivering it (no report is made)."""
        cur = self._write("DELETE FROM outbound WHERE id = ? AND state = 'queued'", (job_id,))
        return cur.rowcount > 0

    def purge_finished_jobs(self, now: int) -> int:
        cur = self._write("DELETE FROM outbound WHERE state != 'queued' AND expires_at < ?", (now,))
        return cur.rowcount
