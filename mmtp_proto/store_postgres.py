"""Durable server storage on PostgreSQL (psycopg 3): one database shared by any number of
server processes, on any number of hosts. `store.Store` (SQLite) is the default backend;
`storage.Storage` is what both offer.

Like the SQLite store, writes are staged in an open transaction and made durable by
`commit()`, once per loop turn; the session runs with `synchronous_commit = on`, so COMMIT
returns only when the transaction is on the primary's disk, and no answer leaves before.

Across processes:
- stamps, messageIds and first key registrations are unique in the database; the conditional
  writes (`ON CONFLICT DO NOTHING`) tell the loser of a race, which gets POW_REPLAYED,
  KEY_EXISTS or the duplicate answer instead of a constraint error;
- a mailbox takes new messages from one transaction at a time (an advisory lock per
  recipient), so the order of `seq` is the order of commits and a RECEIVE cursor never
  passes a message that commits later;
- the caches of keys and account settings are checked against a version row that every
  write to either table bumps (a trigger, pg_schema), once per round of requests with its
  first key or account read (`look_again`): a key replaced or an account disabled anywhere
  is seen by every request read after it, everywhere.

Every statement is a round trip to another process, which on a busy machine may wait to be
scheduled, so a SEND is kept to few (issue 9; counted in tests/test_store_sql.py): the key
comes with its account settings (both cached across rounds), and the mailbox lock, the
tombstone check, the stamp and the message are one statement, sent together with the
round's BEGIN; an unsigned SEND makes no look for a copy delivered already before it (the
write refuses one). The queries both backends run alike are in `store_sql`.
"""

from __future__ import annotations

import contextlib
import logging
import re
import select
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from .errors import MMTPError
from .pg_schema import mailbox_lock, prepare_schema
from .storage import (
    KeyRecord,
    StoreError,
    account_gone,
    checksum,
    deleted_already,
    encode_packet,
    mailbox_full,
    stamp_replayed,
)
from .store_accounts import AccountRecord
from .store_postgres_accounts import PostgresAccounts
from .store_postgres_queue import PostgresQueueMixin
from .store_sql import MESSAGE_COLUMNS, SharedQueries, pg

log = logging.getLogger("mmtp.store")


def redact(url: str) -> str:
    """The URL without its password, fit for a log line or an error message."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def _sent_unasked(db: psycopg.Connection[Any]) -> bool:
    try:
        return bool(select.select([db.pgconn.socket], [], [], 0)[0])
    except (psycopg.Error, OSError):
        return True


def _why(exc: BaseException) -> str:
    """libpq's message on one line (it spreads hints over several)."""
    return " ".join(str(exc).split())


# A SEND's mailbox lock, tried (never waited for) in a statement of its own, so that the
# SEND's statement after it reads the mailbox's usage in a snapshot taken with the lock held:
# every message the lock's last holder stored is counted. Whether it was had is passed on in
# a transaction-local setting; both statements are pipelined, so this costs no wait.
_TRY_MAILBOX = "SELECT set_config('mmtp.mailbox', pg_try_advisory_xact_lock(%s, %s)::text, true)"
_WAIT_MAILBOX = "SELECT pg_advisory_xact_lock(%s, %s), set_config('mmtp.mailbox', 'true', true)"
# A SEND's writes in one statement, each only if what comes before it held: the mailbox
# lock, no tombstone of this id (a copy deleted already), an account not deleted since the
# SEND looked (its name held: delete_account holds the lock), room under the quota, the
# stamp (spent once, globally), the message (its id unique per sender).
_ADD_MESSAGE = (
    "WITH gone AS (SELECT 1 FROM tombstones WHERE recipient = %s AND sender = %s"
    " AND message_id = %s),"
    " held AS (SELECT 1 FROM held_names WHERE email = %s AND until > %s),"
    " room AS (SELECT coalesce(current_setting('mmtp.mailbox', true), '') = 'true' AS got,"
    " coalesce((SELECT messages < %s AND bytes + %s <= %s FROM mailbox_usage"
    " WHERE recipient = %s), %s) AS fits),"
    " stamp AS (INSERT INTO spent_stamps (stamp, expires_at) SELECT %s, %s"
    " WHERE (SELECT got AND fits FROM room) AND NOT EXISTS (SELECT 1 FROM gone)"
    " AND NOT EXISTS (SELECT 1 FROM held)"
    " ON CONFLICT DO NOTHING RETURNING 1),"
    f" message AS (INSERT INTO messages ({MESSAGE_COLUMNS})"
    " SELECT %s, %s, %s, %s, %s, %s, %s, %s"
    " WHERE EXISTS (SELECT 1 FROM stamp) ON CONFLICT DO NOTHING RETURNING seq)"
    " SELECT (SELECT got FROM room), EXISTS (SELECT 1 FROM gone), EXISTS (SELECT 1 FROM held),"
    " (SELECT fits FROM room), EXISTS (SELECT 1 FROM stamp), (SELECT seq FROM message)"
)
# No quota given (a caller other than SEND): none that a mailbox could reach.
_NO_LIMIT = 2**62


class PostgresStore(PostgresAccounts, SharedQueries, PostgresQueueMixin):
    _sql = staticmethod(pg)
    # Kept by a trigger (pg_schema): no count of the mailbox.
    _usage_query = (
        "SELECT coalesce(max(messages), 0), coalesce(max(bytes), 0) FROM mailbox_usage"
        " WHERE recipient = ?"
    )

    def __init__(self, url: str, *, fsync: bool = True, connect_timeout: int = 10) -> None:
        self.url = url
        self._fsync = fsync
        self._connect_timeout = connect_timeout
        self._in_tx = False
        self._rollbacks = 0
        self._statements = 0
        self._counts: dict[str, int] = {}
        self._sizes: dict[str, int] = {}
        self._accounts: dict[str, AccountRecord] = {}
        self._keys: dict[str, KeyRecord] = {}
        self._seen_keys: dict[str, str | None] = {}
        self._key_version: int | None = None
        # Whether this round already compared the key version (see look_again).
        self._keys_checked = False
        self._pipeline: psycopg.Pipeline | None = None
        self._pipeline_end = contextlib.ExitStack()
        # Mailbox locks this transaction waited for (and so holds till its end), and the
        # one whose answer the transaction's `mmtp.mailbox` setting holds.
        self._waited_for: set[tuple[int, int]] = set()
        self._tried: tuple[int, int] | None = None
        self._db = self._connect()
        self._migrate()

    # ------------------------------------------------------------------ connection

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            db = psycopg.connect(self.url, autocommit=True, connect_timeout=self._connect_timeout)
            # Answers leave after COMMIT returns; with this on, that means on the primary's
            # disk (and on synchronous standbys, where the operator configured some).
            db.execute(f"SET synchronous_commit = {'on' if self._fsync else 'off'}")
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the database {redact(self.url)}: {_why(exc)}") from exc
        return db

    def _conn(self) -> psycopg.Connection[Any]:
        if not self._in_tx and not self._db.closed and _sent_unasked(self._db):
            # Idle, yet the server spoke: it ended the session (a restart), which libpq
            # notices only by failing the next request. Nothing is lost yet: a new one.
            self._db.close()
        if self._db.closed:
            # Lost (server restart, failover): the open transaction died with it and was
            # rolled back; a new connection serves the next request.
            log.warning("reconnecting to %s", redact(self.url))
            self._pipeline = None
            self._pipeline_end = contextlib.ExitStack()
            self._db = self._connect()
            self._key_version = None
        return self._db

    def _migrate(self) -> None:
        db = self._conn()
        try:
            with db.transaction():
                prepare_schema(db, redact(self.url))
        except psycopg.Error as exc:
            db.close()
            raise StoreError(
                f"cannot prepare the database {redact(self.url)}: {_why(exc)}"
            ) from exc
        except StoreError:
            db.close()
            raise

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

    def _stage(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        """Send a write without waiting for its result: the transaction is in pipeline mode
        from its BEGIN to its COMMIT, so a round's SENDs cost the loop no wait each. The
        result is read when asked for (`fetchone`), at the latest by COMMIT."""
        try:
            db = self._conn()
            if not self._in_tx:
                self._pipeline = self._pipeline_end.enter_context(db.pipeline())
                self._in_tx = True
                db.execute("BEGIN")
            self._statements += 1
            return db.execute(sql, params)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            raise StoreError(_why(exc)) from exc

    def _write(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        cur = self._stage(sql, params)
        self._sync()
        return cur

    def _sync(self) -> None:
        """Wait for every result sent so far (so a cursor's rowcount is known)."""
        if self._pipeline is not None:
            try:
                self._pipeline.sync()
            except psycopg.Error as exc:
                raise StoreError(_why(exc)) from exc

    def _read(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        if self._in_tx:
            return self._write(sql, params)
        for again in (False, True):
            try:
                return self._conn().execute(sql, params)  # type: ignore[arg-type]
            except psycopg.Error as exc:
                # Lost between transactions (a restart, a failover): a read holds nothing
                # that was lost with it, so it is simply asked again on a new connection.
                if again or not self._db.closed:
                    raise StoreError(_why(exc)) from exc
        raise AssertionError("unreachable")

    def _end_pipeline(self) -> None:
        """Leave pipeline mode: the results still on their way are read (errors raised)."""
        self._waited_for.clear()
        self._tried = None
        end, self._pipeline_end = self._pipeline_end, contextlib.ExitStack()
        self._pipeline = None
        if not self._db.closed:
            end.close()

    def commit(self) -> None:
        if not self._in_tx:
            return
        try:
            self._db.execute("COMMIT")
            self._end_pipeline()
        except psycopg.Error as exc:
            self.rollback()
            raise StoreError(f"commit failed: {_why(exc)}") from exc
        self._in_tx = False

    def rollback(self) -> None:
        if self._in_tx:
            self._rollbacks += 1
            for cache in (self._counts, self._accounts, self._keys, self._seen_keys):
                cache.clear()
            self._key_version = None
            # A failed statement aborted what was sent after it: the pipeline's end
            # reports that error again, which is known already.
            with contextlib.suppress(psycopg.Error):
                self._end_pipeline()
            try:
                if not self._db.closed:
                    self._db.execute("ROLLBACK")
            except psycopg.Error as exc:
                log.warning("rollback failed: %s", exc)
            self._in_tx = False

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self._db.close()

    def refresh(self) -> None:
        """Start a request: which keys it read starts empty (see put_key)."""
        self._seen_keys.clear()

    def look_again(self) -> None:
        """Whatever another process committed before now is seen from here on: keys and
        accounts are checked against the version row at the next read of either (one round
        trip with that read, once per round of requests); counts are read again (inside a
        transaction too: a turn's later round starts in it, and the table the trigger keeps
        follows our own writes)."""
        self._keys_checked = False
        self._counts.clear()

    # ------------------------------------------------------------------ messages

    def add_message(self, **fields: Any) -> int:
        """Store a message and spend its stamp in the same transaction (SPEC §4)."""
        confirm = self.stage_message(**fields)
        return confirm()

    def stage_message(  # type: ignore[override]
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
    ) -> Callable[[], int]:
        """Send the SEND's statements without waiting; `confirm()` reads what they did and
        raises the refusal (a full mailbox, a spent stamp, a taken or deleted id), or gives
        the seq. `quota` is (messages, bytes) the mailbox may hold."""
        if text is None:
            text, digest = encode_packet(packet)
        else:
            digest = checksum(text)
        size = len(text.encode("utf-8"))
        max_messages, max_bytes = quota or (_NO_LIMIT, _NO_LIMIT)
        lock = mailbox_lock(recipient)
        params = (
            *(recipient, sender, message_id, recipient, received_at),
            *(max_messages, size, max_bytes, recipient, max_messages > 0 and size <= max_bytes),
            *(stamp_key, stamp_expires_at),
            *(recipient, sender, message_id, message_hash, received_at, size, text, digest),
        )
        if self._tried != lock:
            self._stage(_TRY_MAILBOX, lock)
            # The setting holds this lock's answer until another mailbox's is tried: a
            # burst of SENDs to one mailbox (a mailing list) tries it once per round.
            self._tried = lock
        cur = self._stage(_ADD_MESSAGE, params)
        # Counted now, so the next SEND's quota check in this round sees it; taken back if
        # the write turns out refused.
        self._stored(recipient, size)
        done: list[int] = []

        def confirm() -> int:
            if not done:
                try:
                    row = cur.fetchone()
                    done.append(self._settle_add(row, lock, params))
                except psycopg.Error as exc:
                    raise StoreError(_why(exc)) from exc
                except MMTPError:
                    self._deleted(recipient, 1, size)
                    raise
            return done[0]

        return confirm

    def _settle_add(self, row: Any, lock: tuple[int, int], params: tuple[Any, ...]) -> int:
        if not row[0]:
            if lock not in self._waited_for:
                # Another process's turn fills this mailbox. Commit what this turn staged
                # (durable early promises nothing new) to wait holding no lock: two processes
                # never wait for each other. This round's writes refused for this mailbox are
                # made again under this one wait (the setting says so, if another changed it).
                self.commit()
                self._waited_for.add(lock)
            if self._tried != lock:
                self._stage(_WAIT_MAILBOX, lock)  # pipelined with the write made again
                self._tried = lock
            row = self._write(_ADD_MESSAGE, params).fetchone()
        _, gone, held, fits, spent, seq = row
        recipient, sender, message_id = params[:3]
        if gone:
            raise deleted_already()
        if held:
            raise account_gone(recipient)
        if not fits:
            raise mailbox_full(recipient)
        if not spent:
            raise stamp_replayed()
        if seq is None:
            stamp_key, message_hash = params[10], params[15]
            self._refuse_taken_id(recipient, message_id, sender, message_hash, stamp_key)
        return int(seq)

    def delete_messages(
        self, recipient: str, message_ids: list[str], *, tombstone_seconds: int | None = None
    ) -> int:
        """Delete by id; with `tombstone_seconds`, leave tombstones (see `tombstone`)."""
        self._hold_mailbox(recipient)
        ids = list(dict.fromkeys(message_ids))
        if tombstone_seconds is not None:
            for message_id in ids:
                self.tombstone(recipient, message_id, tombstone_seconds)
        rows = self._write(
            "DELETE FROM messages WHERE recipient = %s AND message_id = ANY(%s) RETURNING size",
            (recipient, ids),
        ).fetchall()
        self._deleted(recipient, len(rows), sum(int(r[0]) for r in rows))
        return len(rows)

    def purge_expired_stamps(self, now: int) -> int:
        """Forget spent stamps, tombstones, held names and invites past their time."""
        return self._purge_stamps(now) + self.purge_expired_names(now)
