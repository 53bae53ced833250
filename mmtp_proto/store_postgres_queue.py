"""The outbound queue (SPEC §8.5) on PostgreSQL: `store_queue.QueueMixin`'s SQL with
PostgreSQL's placeholders, and what differs there.

Several delivery processes, on any number of hosts, may claim from one queue: a claim picks
its due rows with `FOR UPDATE SKIP LOCKED`, so two claimers running at once never wait for
each other and never get the same row, and leases them in the same statement. Like the rest of
the store, a SEND's enqueue is staged in the turn's transaction and made durable by its commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .storage import message_id_taken, stamp_replayed
from .store_queue import _JOB_COLUMNS, QueueMixin, _digest, _text
from .store_sql import pg


class PostgresQueueMixin(QueueMixin):
    """Queue methods of `store_postgres.PostgresStore` (its `_read` and `_write`)."""

    def _read(self, sql: str, params: Any = ()) -> Any:
        raise NotImplementedError

    def _q_read(self, sql: str, params: Iterable[Any] = ()) -> Any:
        return self._read(pg(sql), tuple(params))

    def _q_write(self, sql: str, params: Iterable[Any] = ()) -> Any:
        return self._write(pg(sql), tuple(params))

    _CLAIM_SQL = (
        "UPDATE outbound AS o SET lease_owner = ?, lease_until = ? FROM (SELECT id FROM"
        " outbound WHERE state = 'queued' AND next_attempt <= ? AND lease_until <= ?{domains}"
        " ORDER BY next_attempt, id LIMIT ? FOR UPDATE SKIP LOCKED) AS due WHERE o.id = due.id"
        " RETURNING " + ", ".join(f"o.{c.strip()}" for c in _JOB_COLUMNS.split(","))
    )

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
        text = _text(packet)
        # Conditional, as `add_message`: another process may have spent the stamp or queued
        # the message since this one looked; then the look's answer is raised.
        row = self._write(
            "WITH stamp AS (INSERT INTO spent_stamps (stamp, expires_at) VALUES (%s, %s)"
            " ON CONFLICT DO NOTHING RETURNING 1),"
            " job AS (INSERT INTO outbound (domain, recipient, sender, message_id, message_hash,"
            " packet, checksum, queued_at, next_attempt, expires_at)"
            " SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM stamp)"
            " ON CONFLICT DO NOTHING RETURNING id)"
            " SELECT EXISTS (SELECT 1 FROM stamp), (SELECT id FROM job)",
            (
                *(stamp_key, stamp_expires_at),
                *(domain, recipient, sender, message_id, message_hash),
                *(text, _digest(text), now, now, expires_at),
            ),
        ).fetchone()
        assert row is not None
        spent, job_id = row
        if not spent:
            raise stamp_replayed()
        if job_id is None:
            self._write("DELETE FROM spent_stamps WHERE stamp = %s", (stamp_key,))
            found = self.find_queued_hash(recipient, sender, message_id)
            raise message_id_taken(found == message_hash)
        return int(job_id)
