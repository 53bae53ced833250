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
    lease_owner TEXT,
    lease_until INTEGER NOT NULL DEFAULT 0,
    UNIQUE (recipient, sender, message_id)
);
CREATE INDEX IF NOT EXISTS outbound_due ON outbound (state, next_attempt);
"""
# Schema 4 added the lease columns to a queue made by schema 3.
_LEASE_COLUMNS = (
    ("lease_owner", "TEXT"),
    ("lease_until", "INTEGER NOT NULL DEFAULT 0"),
)
# What a claim returns, in QueuedJob's order (with the checksum after the packet).
_JOB_COLUMNS = (
    "id, domain, recipient, sender, message_id, packet, checksum, queued_at, expires_at,"
    " attempts, delay_notified"
)

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


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def upgrade_queue(db: sqlite3.Connection) -> None:
    """Create the queue, or give one made by schema 3 its lease columns."""
    db.executescript(QUEUE_SCHEMA)
    have = {row[1] for row in db.execute("PRAGMA table_info(outbound)")}
    for name, kind in _LEASE_COLUMNS:
        if name not in have:
            db.execute(f"ALTER TABLE outbound ADD COLUMN {name} {kind}")


class QueueMixin:
    """Queue methods of `store.Store` (its `_db` and `_write`); `store_postgres_queue` adapts
    them to PostgreSQL. The SQL is written once, with `?` placeholders.

    Delivery claims jobs with a lease (`claim_jobs`): a claimed job is nobody else's until
    the lease ends, and its outcome (`finish_job`, `retry_job` with `owner`) is written only
    while the claim is still that owner's. A delivery process that dies mid-delivery leaves
    its jobs to whoever claims them after the lease; one that was merely slow finds its
    outcome refused, so a job is finished, and reported on, once.
    """

    _db: Any

    def _write(self, sql: str, params: Any = ()) -> Any:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def _q_read(self, sql: str, params: Iterable[Any] = ()) -> Any:
        return self._db.execute(sql, tuple(params))

    def _q_write(self, sql: str, params: Iterable[Any] = ()) -> Any:
        return self._write(sql, tuple(params))

    def find_queued_hash(self, recipient: str, sender: str, message_id: str) -> str | None:
        row = self._q_read(
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
                *(domain, recipient, sender, message_id, message_hash),
                *(text, _digest(text), now, now, expires_at),
            ),
        )
        return int(cur.lastrowid or 0)

    def _jobs(self, rows: Iterable[Any]) -> list[QueuedJob]:
        """Rows of _JOB_COLUMNS as jobs; a damaged packet fails its job instead."""
        jobs = []
        for row in rows:
            text, checksum = row[5], row[6]
            if _digest(text) != checksum:
                self._q_write(
                    "UPDATE outbound SET state = 'failed', last_code = 'INTERNAL',"
                    " last_error = 'the queued packet is damaged', lease_owner = NULL,"
                    " lease_until = 0 WHERE id = ?",
                    (row[0],),
                )
                continue
            jobs.append(
                QueuedJob(*row[0:5], json.loads(text), *(int(v) for v in row[7:10]), bool(row[10]))
            )
        return jobs

    def due_jobs(self, now: int, limit: int = 500) -> list[QueuedJob]:
        """Due jobs no one holds a lease on, without claiming them."""
        rows = self._q_read(
            f"SELECT {_JOB_COLUMNS} FROM outbound WHERE state = 'queued' AND next_attempt <= ?"
            " AND lease_until <= ? ORDER BY next_attempt, id LIMIT ?",
            (now, now, limit),
        ).fetchall()
        return self._jobs(rows)

    def due_domains(self, now: int) -> dict[str, int]:
        """How many due jobs no one holds a lease on there are, per domain."""
        rows = self._q_read(
            "SELECT domain, COUNT(*) FROM outbound WHERE state = 'queued' AND next_attempt <= ?"
            " AND lease_until <= ? GROUP BY domain ORDER BY domain",
            (now, now),
        ).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    # The jobs to claim are picked and leased in one statement, in one write transaction:
    # on SQLite the write lock (BEGIN IMMEDIATE) orders claimers; PostgreSQL overrides this.
    _CLAIM_SQL = (
        "UPDATE outbound SET lease_owner = ?, lease_until = ? WHERE id IN (SELECT id FROM"
        " outbound WHERE state = 'queued' AND next_attempt <= ? AND lease_until <= ?{domains}"
        f" ORDER BY next_attempt, id LIMIT ?) RETURNING {_JOB_COLUMNS}"
    )

    def claim_jobs(
        self,
        owner: str,
        now: int,
        lease_seconds: int,
        limit: int,
        *,
        domains: list[str] | None = None,
    ) -> list[QueuedJob]:
        """Lease up to `limit` due jobs (to `domains` only, if given) to `owner` until
        now + lease_seconds, and commit. Expired leases count as free: their jobs are
        claimed again."""
        only = ""
        if domains is not None:
            only = f" AND domain IN ({','.join('?' * len(domains)) or 'NULL'})"
        rows = self._q_write(
            self._CLAIM_SQL.replace("{domains}", only),
            (owner, now + lease_seconds, now, now, *(domains or ()), limit),
        ).fetchall()
        jobs = self._jobs(sorted(rows, key=lambda r: int(r[0])))
        self.commit()
        return jobs

    def extend_leases(self, owner: str, job_ids: list[int], until: int) -> int:
        """Keep the claims `owner` still holds (a long batch); how many it held."""
        cur = self._q_write(
            "UPDATE outbound SET lease_until = ? WHERE lease_owner = ? AND state = 'queued'"
            f" AND id IN ({','.join('?' * len(job_ids)) or 'NULL'})",
            (until, owner, *job_ids),
        )
        return int(cur.rowcount)

    def release_jobs(self, owner: str, job_ids: list[int]) -> None:
        """Give back claims not worked on (another claimer may take them at once)."""
        self._q_write(
            "UPDATE outbound SET lease_owner = NULL, lease_until = 0 WHERE lease_owner = ?"
            f" AND id IN ({','.join('?' * len(job_ids)) or 'NULL'})",
            (owner, *job_ids),
        )

    def lease_owners(self, now: int) -> list[str]:
        """Who holds unexpired claims now."""
        rows = self._q_read(
            "SELECT DISTINCT lease_owner FROM outbound WHERE state = 'queued'"
            " AND lease_owner IS NOT NULL AND lease_until > ?",
            (now,),
        ).fetchall()
        return [str(row[0]) for row in rows]

    def release_owner(self, owner: str) -> int:
        """Give back every claim `owner` holds (it is known to be dead); how many."""
        cur = self._q_write(
            "UPDATE outbound SET lease_owner = NULL, lease_until = 0 WHERE lease_owner = ?"
            " AND state = 'queued'",
            (owner,),
        )
        return int(cur.rowcount)

    def next_due(self) -> int | None:
        """When the next job can be claimed (a job's lease delays it)."""
        row = self._q_read(
            "SELECT MIN(CASE WHEN lease_until > next_attempt THEN lease_until"
            " ELSE next_attempt END) FROM outbound WHERE state = 'queued'"
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def queue_list(self) -> list[dict[str, Any]]:
        rows = self._q_read(
            "SELECT id, recipient, sender, message_id, state, attempts, next_attempt,"
            " last_code, last_error, lease_owner, lease_until FROM outbound ORDER BY id"
        ).fetchall()
        keys = ("id", "recipient", "sender", "messageId", "state", "attempts", "nextAttempt")
        keys += ("lastCode", "lastError", "leasedBy", "leaseUntil")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    @staticmethod
    def _held(owner: str | None) -> tuple[str, tuple[str, ...]]:
        """The condition an outcome is written under: the owner's claim still stands (none
        for the operator's tools and tests, which pass no owner)."""
        if owner is None:
            return "", ()
        return " AND lease_owner = ?", (owner,)

    def finish_job(
        self,
        job_id: int,
        state: str,
        *,
        code: str | None,
        error: str | None,
        remote: str | None,
        owner: str | None = None,
    ) -> bool:
        """A job is done or failed: its packet is dropped, its row kept for the dedupe.
        False when `owner` no longer holds the job's claim (nothing is written)."""
        held, extra = self._held(owner)
        cur = self._q_write(
            "UPDATE outbound SET state = ?, packet = '', checksum = ?, attempts = attempts + 1,"
            " last_code = ?, last_error = ?, last_remote = ?, lease_owner = NULL,"
            f" lease_until = 0 WHERE id = ? AND state = 'queued'{held}",
            (state, _digest(""), code, error, remote, job_id, *extra),
        )
        return int(cur.rowcount) > 0

    def retry_job(
        self,
        job_id: int,
        next_attempt: int,
        *,
        code: str | None,
        error: str | None,
        remote: str | None,
        delay_notified: bool,
        owner: str | None = None,
    ) -> bool:
        """Try again at `next_attempt`; False when `owner` no longer holds the claim."""
        held, extra = self._held(owner)
        cur = self._q_write(
            "UPDATE outbound SET attempts = attempts + 1, next_attempt = ?, last_code = ?,"
            " last_error = ?, last_remote = ?, delay_notified = ?, lease_owner = NULL,"
            f" lease_until = 0 WHERE id = ? AND state = 'queued'{held}",
            (next_attempt, code, error, remote, int(delay_notified), job_id, *extra),
        )
        return int(cur.rowcount) > 0

    def lock_order(self, recipient: str) -> Any:
        """Where `recipient`'s mailbox comes when one transaction stores into several: in
        this order, two transactions never each hold a mailbox the other waits for. (SQLite
        locks the whole database for a write: any order does.)"""
        return recipient

    def add_report(self, packet: dict[str, Any], now: int) -> None:
        """Store a server-made packet (a DSN, SPEC §10) in its recipient's mailbox: no stamp.
        Nothing for an account deleted meanwhile (its name held): the name's next owner
        must not find it."""
        text = _text(packet)
        self._q_write(
            "INSERT INTO messages (recipient, sender, message_id, message_hash, received_at,"
            " size, packet, checksum) SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS"
            " (SELECT 1 FROM held_names WHERE email = ? AND until > ?)",
            (
                packet["recipient"],
                packet["sender"],
                packet["meta"]["messageId"],
                packet["verification"]["messageHash"],
                now,
                len(text.encode("utf-8")),
                text,
                hashlib.sha256(text.encode("utf-8")).hexdigest(),
                packet["recipient"],
                now,
            ),
        )

    # For the operator (SPEC §11: list, retry now, remove).

    def queue_retry_now(self, now: int, job_id: int | None = None) -> int:
        """Make one queued job (or all, with None) due now; how many."""
        if job_id is None:
            cur = self._q_write(
                "UPDATE outbound SET next_attempt = ? WHERE state = 'queued'", (now,)
            )
        else:
            cur = self._q_write(
                "UPDATE outbound SET next_attempt = ? WHERE state = 'queued' AND id = ?",
                (now, job_id),
            )
        return int(cur.rowcount)

    def queue_remove(self, job_id: int) -> bool:
        """Drop a queued job without delivering it (no report is made; a delivery under way
        finds its claim gone and writes nothing)."""
        cur = self._q_write("DELETE FROM outbound WHERE id = ? AND state = 'queued'", (job_id,))
        return int(cur.rowcount) > 0

    def purge_finished_jobs(self, now: int) -> int:
        cur = self._q_write(
            "DELETE FROM outbound WHERE state != 'queued' AND expires_at < ?", (now,)
        )
        return int(cur.rowcount)
