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
- the key cache is checked against a version row that every key write bumps, once per
  request (with its first key read): a key replaced anywhere is seen by the next request
  everywhere.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from typing import Any

import psycopg

from .pg_schema import MAILBOX_LOCK_SPACE, SCHEMA, SCHEMA_LOCK, SCHEMA_VERSION
from .storage import (
    KeyRecord,
    StoredMessage,
    StoreError,
    check_schema_version,
    checksum,
    encode_packet,
    key_changed_meanwhile,
    message_id_taken,
    page_messages,
    stamp_replayed,
)
from .store_accounts import AccountRecord
from .store_postgres_accounts import PostgresAccounts
from .store_postgres_queue import PostgresQueueMixin

log = logging.getLogger("mmtp.store")


def redact(url: str) -> str:
    """The URL without its password, fit for a log line or an error message."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def _why(exc: BaseException) -> str:
    """libpq's message on one line (it spreads hints over several)."""
    return " ".join(str(exc).split())


def _mailbox_lock_id(recipient: str) -> int:
    return int.from_bytes(hashlib.sha256(recipient.encode()).digest()[:4], "big", signed=True)


class PostgresStore(PostgresQueueMixin, PostgresAccounts):
    def __init__(self, url: str, *, fsync: bool = True, connect_timeout: int = 10) -> None:
        self.url = url
        self._fsync = fsync
        self._connect_timeout = connect_timeout
        self._in_tx = False
        self._rollbacks = 0
        self._counts: dict[str, int] = {}
        self._sizes: dict[str, int] = {}
        self._accounts: dict[str, AccountRecord] = {}
        self._keys: dict[str, KeyRecord] = {}
        self._seen_keys: dict[str, str | None] = {}
        self._key_version: int | None = None
        # Whether this request already compared the key version (see refresh).
        self._keys_checked = False
        # Mailboxes whose advisory lock the open transaction holds.
        self._locked: set[str] = set()
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
        if self._db.closed:
            # Lost (server restart, failover): the open transaction died with it and was
            # rolled back; a new connection serves the next request.
            log.warning("reconnecting to %s", redact(self.url))
            self._db = self._connect()
            self._key_version = None
        return self._db

    def _migrate(self) -> None:
        db = self._conn()
        try:
            with db.transaction():
                # Two processes starting together: one creates the schema, the other waits.
                db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                found = 0
                if db.execute("SELECT to_regclass('mmtp_meta')").fetchone() != (None,):
                    row = db.execute(
                        "SELECT value FROM mmtp_meta WHERE name = 'schema_version'"
                    ).fetchone()
                    found = int(row[0]) if row else 0
                check_schema_version(found, SCHEMA_VERSION, redact(self.url))
                db.execute(SCHEMA)
                db.execute(
                    "INSERT INTO mmtp_meta (name, value) VALUES ('schema_version', %s)"
                    " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    (SCHEMA_VERSION,),
                )
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

    def _write(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        try:
            db = self._conn()
            if not self._in_tx:
                db.execute("BEGIN")
                self._in_tx = True
            return db.execute(sql, params)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            raise StoreError(_why(exc)) from exc

    def _read(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        try:
            return self._conn().execute(sql, params)  # type: ignore[arg-type]
        except psycopg.OperationalError as exc:
            if self._in_tx or not self._db.closed:
                raise StoreError(_why(exc)) from exc
            # Lost between transactions (a restart, a failover): a read holds nothing that
            # was lost with it, so it is simply asked again on a new connection.
        except psycopg.Error as exc:
            raise StoreError(_why(exc)) from exc
        try:
            return self._conn().execute(sql, params)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            raise StoreError(_why(exc)) from exc

    def commit(self) -> None:
        if not self._in_tx:
            return
        try:
            self._db.execute("COMMIT")
        except psycopg.Error as exc:
            self.rollback()
            raise StoreError(f"commit failed: {_why(exc)}") from exc
        self._in_tx = False
        self._locked.clear()

    def rollback(self) -> None:
        if self._in_tx:
            self._rollbacks += 1
            self._counts.clear()
            self._accounts.clear()
            self._keys.clear()
            self._seen_keys.clear()
            self._locked.clear()
            self._key_version = None
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
        """Start a request: keys are checked against the version row at the first key read
        (one round trip with that read); counts are taken again outside a transaction
        (inside ours, they follow our own writes)."""
        self._seen_keys.clear()
        self._keys_checked = False
        self._accounts.clear()
        if not self._in_tx:
            self._counts.clear()

    # ------------------------------------------------------------------ keys

    def get_key(self, email: str) -> KeyRecord | None:
        record = self._keys.get(email) if self._keys_checked else None
        if record is None:
            # The key and the key version in one round trip: if any process changed a key
            # since this store last looked, every cached key is dropped.
            row = self._read(
                "SELECT (SELECT value FROM mmtp_meta WHERE name = 'key_version'),"
                " k.email, k.armored, k.fingerprint, k.registered_at"
                " FROM (VALUES (1)) AS one LEFT JOIN keys AS k ON k.email = %s",
                (email,),
            ).fetchone()
            assert row is not None
            if not self._keys_checked:
                self._keys_checked = True
                if row[0] != self._key_version:
                    self._key_version = row[0]
                    self._keys.clear()
            if row[1] is not None:
                record = KeyRecord(*row[1:])
                if len(self._keys) >= 100_000:
                    self._keys.clear()
                self._keys[email] = record
        if len(self._seen_keys) >= 1024:
            self._seen_keys.clear()
        self._seen_keys[email] = record.armored if record else None
        return record

    def put_key(self, email: str, armored: str, fingerprint: str, now: int) -> None:
        """Register or replace the key of `email` (only the one `get_key` read, if it did:
        see `store.Store.put_key`)."""
        params: tuple[Any, ...] = (email, armored, fingerprint, now)
        insert = (
            "INSERT INTO keys (email, armored, fingerprint, registered_at) VALUES (%s, %s, %s, %s)"
        )
        update = (
            " ON CONFLICT (email) DO UPDATE SET armored = excluded.armored,"
            " fingerprint = excluded.fingerprint, registered_at = excluded.registered_at"
        )
        unseen = object()
        seen = self._seen_keys.pop(email, unseen)
        if seen is unseen:
            cur = self._write(insert + update, params)
        elif seen is None:
            cur = self._write(insert + " ON CONFLICT DO NOTHING", params)
        else:
            cur = self._write(insert + update + " WHERE keys.armored = %s", (*params, seen))
        if cur.rowcount == 0:
            self._keys.pop(email, None)
            current = self.get_key(email)
            if current is None or current.armored != armored:
                raise key_changed_meanwhile(email)
            return
        # Every process's next request sees the version move and reads keys afresh.
        self._write("UPDATE mmtp_meta SET value = value + 1 WHERE name = 'key_version'")
        self._keys[email] = KeyRecord(email, armored, fingerprint, now)

    # ------------------------------------------------------------------ messages

    def find_message_hash(
        self, recipient: str, message_id: str, sender: str | None = None
    ) -> str | None:
        sql = "SELECT message_hash FROM messages WHERE recipient = %s AND message_id = %s"
        params: tuple[str, ...] = (recipient, message_id)
        if sender is not None:
            sql += " AND sender = %s"
            params += (sender,)
        row = self._read(sql, params).fetchone()
        return str(row[0]) if row else None

    def is_spent(self, stamp_key: str) -> bool:
        row = self._read("SELECT 1 FROM spent_stamps WHERE stamp = %s", (stamp_key,))
        return row.fetchone() is not None

    def _lock_mailbox(self, recipient: str) -> None:
        if recipient in self._locked:
            return
        args = (MAILBOX_LOCK_SPACE, _mailbox_lock_id(recipient))
        got = self._write("SELECT pg_try_advisory_xact_lock(%s, %s)", args).fetchone()
        if not (got and got[0]):
            # Another process's turn is filling this mailbox. Commit what this turn staged
            # first (making it durable early promises nothing new), so that we hold no lock
            # while we wait: two processes can never wait for each other.
            self.commit()
            self._write("SELECT pg_advisory_xact_lock(%s, %s)", args)
        self._locked.add(recipient)

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
    ) -> int:
        """Store a message and spend its stamp in the same transaction (SPEC §4)."""
        if text is None:
            text, digest = encode_packet(packet)
        else:
            digest = checksum(text)
        size = len(text.encode("utf-8"))
        self._lock_mailbox(recipient)
        # One round trip: the message is inserted only if its stamp was not spent yet.
        row = self._write(
            "WITH stamp AS (INSERT INTO spent_stamps (stamp, expires_at) VALUES (%s, %s)"
            " ON CONFLICT DO NOTHING RETURNING 1),"
            " message AS (INSERT INTO messages (recipient, sender, message_id, message_hash,"
            " received_at, size, packet, checksum) SELECT %s, %s, %s, %s, %s, %s, %s, %s"
            " WHERE EXISTS (SELECT 1 FROM stamp) ON CONFLICT DO NOTHING RETURNING seq)"
            " SELECT EXISTS (SELECT 1 FROM stamp), (SELECT seq FROM message)",
            (
                *(stamp_key, stamp_expires_at),
                *(recipient, sender, message_id, message_hash, received_at, size, text, digest),
            ),
        ).fetchone()
        assert row is not None
        spent, seq = row
        if not spent:
            raise stamp_replayed()
        if seq is None:
            self._write("DELETE FROM spent_stamps WHERE stamp = %s", (stamp_key,))
            found = self.find_message_hash(recipient, message_id, sender)
            raise message_id_taken(found == message_hash)
        if recipient in self._counts:
            self._counts[recipient] += 1
            self._sizes[recipient] += size
        return int(seq)

    def count_messages(self, recipient: str) -> int:
        return self.mailbox_usage(recipient)[0]

    def mailbox_usage(self, recipient: str) -> tuple[int, int]:
        """(messages, bytes of stored packets) in a mailbox, staged writes included."""
        count = self._counts.get(recipient)
        if count is None:
            row = self._read(
                "SELECT count(*), coalesce(sum(size), 0) FROM messages WHERE recipient = %s",
                (recipient,),
            ).fetchone()
            assert row is not None
            if len(self._counts) >= 100_000:
                self._counts.clear()
                self._sizes.clear()
            count = self._counts[recipient] = int(row[0])
            self._sizes[recipient] = int(row[1])
        return count, self._sizes[recipient]

    def list_messages(
        self, recipient: str, after_seq: int, limit: int, max_bytes: int | None = None
    ) -> tuple[list[StoredMessage], bool]:
        def fetch(position: int, n: int) -> Sequence[tuple[int, str, str]]:
            return self._read(
                "SELECT seq, packet, checksum FROM messages WHERE recipient = %s AND seq > %s"
                " ORDER BY seq LIMIT %s",
                (recipient, position, n),
            ).fetchall()

        return page_messages(fetch, recipient, after_seq, limit, max_bytes)

    def delete_messages(
        self, recipient: str, message_ids: list[str], *, tombstone_seconds: int | None = None
    ) -> int:
        """Delete by id; with `tombstone_seconds`, leave tombstones (see `tombstone`)."""
        ids = list(dict.fromkeys(message_ids))
        if tombstone_seconds is not None:
            for message_id in ids:
                self.tombstone(recipient, message_id, tombstone_seconds)
        rows = self._write(
            "DELETE FROM messages WHERE recipient = %s AND message_id = ANY(%s) RETURNING size",
            (recipient, ids),
        ).fetchall()
        if recipient in self._counts:
            self._counts[recipient] -= len(rows)
            self._sizes[recipient] -= sum(int(r[0]) for r in rows)
        return len(rows)

    def purge_expired_stamps(self, now: int) -> int:
        """Forget spent stamps, tombstones, held names and invites past their time."""
        purged = self._write("DELETE FROM spent_stamps WHERE expires_at < %s", (now,)).rowcount
        return purged + self.purge_expired_names(now)
