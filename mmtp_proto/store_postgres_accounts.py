"""What `store_postgres.PostgresStore` keeps about accounts besides keys and mail (SPEC §5,
§11), as `store_accounts` does for SQLite: per-account settings (disabled, quotas), invites,
held and reserved names, and tombstones of deleted messages.

A mixin: it shares the store's connection, transaction and caches. A key and its account
settings are read together (`get_key`, `account`): cached, and checked once per round of
requests (`look_again`) against a version row that a trigger bumps at every write to
`accounts` or `keys` (pg_schema), so a change made by any process (or by `mmtp-admin`), a
deleted account and its key included, is seen by every request read after it, everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .pg_schema import mailbox_lock
from .storage import KeyRecord
from .store_accounts import AccountRecord

# The key, its account settings and the key version in one round trip (see get_key).
_KEY_AND_ACCOUNT = (
    "SELECT (SELECT value FROM mmtp_meta WHERE name = 'key_version'),"
    " k.email, k.armored, k.fingerprint, k.registered_at,"
    " a.email, a.disabled, a.max_messages, a.max_bytes"
    " FROM (VALUES (1)) AS one LEFT JOIN keys AS k ON k.email = %s"
    " LEFT JOIN accounts AS a ON a.email = %s"
)


def _signature_verified(text: str) -> bool:
    try:
        return bool(json.loads(text)["meta"]["signatureVerified"])
    except (ValueError, KeyError, TypeError):
        return False


def _timestamp(text: str, default: int) -> int:
    try:
        value = json.loads(text)["meta"]["timestamp"]
    except (ValueError, KeyError, TypeError):
        return default
    return int(value) if isinstance(value, int | float) else default


class PostgresAccounts:
    if TYPE_CHECKING:
        import psycopg

        _accounts: dict[str, AccountRecord]
        _counts: dict[str, int]
        _sizes: dict[str, int]
        _keys: dict[str, KeyRecord]
        _seen_keys: dict[str, str | None]
        _keys_checked: bool
        _key_version: int | None

        def _read(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]: ...
        def _write(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]: ...
        def _stage(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]: ...

    # ------------------------------------------------------------------ keys

    def _look_up(self, email: str) -> None:
        """Cache the key and the account settings of `email`, read with the version row in
        one round trip: if any process changed a key or an account since this store last
        looked, every cached one is dropped first."""
        row = self._read(_KEY_AND_ACCOUNT, (email, email)).fetchone()
        assert row is not None
        if not self._keys_checked:
            self._keys_checked = True
            if row[0] != self._key_version:
                self._key_version = row[0]
                self._keys.clear()
                self._accounts.clear()
        if row[1] is not None:
            if len(self._keys) >= 100_000:
                self._keys.clear()
            self._keys[email] = KeyRecord(*row[1:5])
        else:
            self._keys.pop(email, None)
        # Bounded: anyone can name as many addresses without an account as they like.
        if len(self._accounts) >= 10_000:
            self._accounts.clear()
        found = row[5] is not None
        self._accounts[email] = AccountRecord(
            email, bool(row[6]) if found else False, row[7], row[8]
        )

    def get_key(self, email: str) -> KeyRecord | None:
        if not self._keys_checked or email not in self._keys:
            self._look_up(email)
        record = self._keys.get(email)
        if len(self._seen_keys) >= 1024:
            self._seen_keys.clear()
        self._seen_keys[email] = record.armored if record else None
        return record

    def account(self, email: str) -> AccountRecord:
        """Settings of an address (defaults when the operator set none)."""
        if not self._keys_checked or email not in self._accounts:
            self._look_up(email)
        return self._accounts[email]

    def _key_written(self, record: KeyRecord) -> None:
        # The trigger moved the version: every process's next request reads keys afresh.
        self._keys[record.email] = record

    def find_delivered(
        self, recipient: str, sender: str, message_id: str
    ) -> tuple[str, bool] | None:
        """(messageHash, signatureVerified) of a message stored or deleted (a tombstone) for
        this recipient from this sender under this id (SPEC §5), or None."""
        # One round trip for both places (a signed or relayed SEND asks this first).
        key = (recipient, sender, message_id)
        row = self._read(
            "SELECT 0, message_hash, packet, false FROM messages"
            " WHERE recipient = %s AND sender = %s AND message_id = %s"
            " UNION ALL SELECT 1, message_hash, NULL, signature_verified FROM tombstones"
            " WHERE recipient = %s AND sender = %s AND message_id = %s ORDER BY 1 LIMIT 1",
            (*key, *key),
        ).fetchone()
        if row is None:
            return None
        return str(row[1]), _signature_verified(row[2]) if row[0] == 0 else bool(row[3])

    def tombstone(self, recipient: str, message_id: str, seconds: int) -> None:
        """Before a delete: remember each message under this id until its timestamp plus
        `seconds`, so a late copy is known as already delivered."""
        rows = self._read(
            "SELECT sender, message_hash, packet, received_at FROM messages"
            " WHERE recipient = %s AND message_id = %s",
            (recipient, message_id),
        ).fetchall()
        for sender, message_hash, text, received_at in rows:
            self._write(
                "INSERT INTO tombstones (recipient, sender, message_id, message_hash,"
                " signature_verified, expires_at) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (recipient, sender, message_id) DO UPDATE SET"
                " message_hash = excluded.message_hash,"
                " signature_verified = excluded.signature_verified,"
                " expires_at = excluded.expires_at",
                (
                    *(recipient, sender, message_id, message_hash),
                    *(_signature_verified(text), _timestamp(text, received_at) + seconds),
                ),
            )

    def list_accounts(self) -> list[dict[str, Any]]:
        """Every address with a key or settings: key, state, quota and usage (for mmtp-admin),
        in one query (not one count per mailbox)."""
        rows = self._read(
            "SELECT e.email, k.fingerprint, k.registered_at, a.disabled, a.max_messages,"
            " a.max_bytes, coalesce(m.n, 0), coalesce(m.size, 0)"
            " FROM (SELECT email FROM keys UNION SELECT email FROM accounts) e"
            " LEFT JOIN keys k ON k.email = e.email LEFT JOIN accounts a ON a.email = e.email"
            " LEFT JOIN (SELECT recipient, count(*) AS n, sum(size) AS size FROM messages"
            " GROUP BY recipient) m ON m.recipient = e.email ORDER BY e.email"
        ).fetchall()
        return [
            {
                "email": email,
                "fingerprint": fingerprint,
                "registeredAt": None if registered_at is None else int(registered_at),
                "disabled": bool(disabled),
                "messages": int(count),
                "bytes": int(size),
                "maxMessages": max_messages,
                "maxBytes": max_bytes,
            }
            for (
                email,
                fingerprint,
                registered_at,
                disabled,
                max_messages,
                max_bytes,
                count,
                size,
            ) in rows
        ]

    def _hold_mailbox(self, recipient: str) -> None:
        """Before deleting from a mailbox: wait for its lock, first in the transaction (the
        server commits before every DELETE), so that it waits holding nothing. Unlocked, a
        delete would wait (the trigger's usage row) for a SEND round that holds the lock,
        while that round's re-send of a message being deleted waits for the delete: a
        deadlock. And a SEND's tombstone check, made under the lock, sees the delete's.
        Pipelined: the next statement's answer brings this one's (no round trip of its own)."""
        self._stage("SELECT pg_advisory_xact_lock(%s, %s)", mailbox_lock(recipient))

    def lock_order(self, recipient: str) -> Any:
        """The order of the mailbox locks themselves: two addresses may share a lock."""
        return mailbox_lock(recipient)

    def add_report(self, packet: dict[str, Any], now: int) -> None:
        """A server-made packet (the delivery process's DSNs), stored under its mailbox's
        lock as a SEND is: unlocked, its usage row (the trigger) could be locked by a
        report of the same batch while a server's round, holding another mailbox's lock and
        row, waits for it and it for the round: a deadlock. Here the delivery waits for the
        lock, never the server's round (it only tries; it waits only after its commit), and
        the mailbox's seq order stays its commit order."""
        self._hold_mailbox(packet["recipient"])
        super().add_report(packet, now)  # type: ignore[misc]

    def delete_account(self, email: str, *, hold_until: int) -> int:
        """Remove an account's mailbox, key, settings and invites; hold its name. Returns how
        many messages were deleted."""
        self._hold_mailbox(email)
        deleted = self._write("DELETE FROM messages WHERE recipient = %s", (email,)).rowcount
        for table in ("keys", "accounts", "invites"):
            self._write(f"DELETE FROM {table} WHERE email = %s", (email,))
        self._write(
            "INSERT INTO held_names (email, until) VALUES (%s, %s)"
            " ON CONFLICT (email) DO UPDATE SET until = excluded.until",
            (email, hold_until),
        )
        # The triggers on keys and accounts moved the version: every process's next request
        # drops the cached key and settings.
        for cache in (self._keys, self._accounts, self._counts, self._sizes):
            cache.pop(email, None)
        return int(deleted)

    def held_names(self, now: int) -> list[tuple[str, int]]:
        rows = self._read(
            "SELECT email, until FROM held_names WHERE until > %s ORDER BY email", (now,)
        )
        return [(str(e), int(u)) for e, u in rows]

    def release_name(self, email: str) -> bool:
        return self._write("DELETE FROM held_names WHERE email = %s", (email,)).rowcount > 0

    def add_reserved_name(self, name: str) -> bool:
        cur = self._write(
            "INSERT INTO reserved_names (name) VALUES (%s) ON CONFLICT DO NOTHING", (name,)
        )
        return cur.rowcount > 0

    def remove_reserved_name(self, name: str) -> bool:
        return self._write("DELETE FROM reserved_names WHERE name = %s", (name,)).rowcount > 0

    def add_invite(self, digest: str, email: str, *, now: int, expires_at: int) -> None:
        self._write(
            "INSERT INTO invites (digest, email, created_at, expires_at) VALUES (%s, %s, %s, %s)",
            (digest, email, now, expires_at),
        )

    def list_invites(self, now: int) -> list[tuple[str, int]]:
        rows = self._read(
            "SELECT email, expires_at FROM invites WHERE expires_at > %s ORDER BY email", (now,)
        )
        return [(str(e), int(x)) for e, x in rows]

    def held_until(self, email: str, now: int) -> int | None:
        row = self._read(
            "SELECT until FROM held_names WHERE email = %s AND until > %s", (email, now)
        ).fetchone()
        return int(row[0]) if row else None

    def reserved_names(self) -> list[str]:
        return [str(r[0]) for r in self._read("SELECT name FROM reserved_names ORDER BY 1")]

    def invite_is_valid(self, digest: str, email: str, now: int) -> bool:
        row = self._read(
            "SELECT 1 FROM invites WHERE digest = %s AND email = %s AND expires_at > %s",
            (digest, email, now),
        ).fetchone()
        return row is not None

    def spend_invite(self, digest: str) -> None:
        """Spent in the registration's transaction: a failed commit gives the invite back."""
        self._write("DELETE FROM invites WHERE digest = %s", (digest,))

    def purge_expired_names(self, now: int) -> int:
        purged = self._write("DELETE FROM held_names WHERE until <= %s", (now,)).rowcount
        purged += self._write("DELETE FROM invites WHERE expires_at <= %s", (now,)).rowcount
        return purged + self._write("DELETE FROM tombstones WHERE expires_at < %s", (now,)).rowcount
