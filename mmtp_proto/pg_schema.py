"""The PostgreSQL schema of `store_postgres` and the advisory lock ids it uses.

Tables are created with IF NOT EXISTS by the first start, and by the first start of a newer
schema version, under SCHEMA_LOCK; `mmtp_meta` holds `schema_version` (checked at every
start: a newer one is refused) and `key_version`, which a
trigger bumps at every write to `keys` or `accounts`, whoever makes it (a server, mmtp-admin,
psql): every process then drops its cached keys and account settings at its next request.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .storage import check_schema_version

# 2: the outbound queue (store_postgres_queue); 3: mailbox_usage, kept by a trigger.
SCHEMA_VERSION = 3
# Advisory lock ids: one for creating and migrating the schema, and the mailbox locks, which
# are taken in their own key space (the two-integer form) so they never meet this one.
SCHEMA_LOCK = 0x6D6D7470
MAILBOX_LOCK_SPACE = 0x6D626F78


def mailbox_lock(recipient: str) -> tuple[int, int]:
    """The two-integer advisory lock id of a mailbox (in MAILBOX_LOCK_SPACE)."""
    digest = hashlib.sha256(recipient.encode()).digest()
    return MAILBOX_LOCK_SPACE, int.from_bytes(digest[:4], "big", signed=True)


SCHEMA = """
CREATE TABLE IF NOT EXISTS mmtp_meta (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS keys (
    email TEXT PRIMARY KEY,
    armored TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    registered_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recipient TEXT NOT NULL,
    sender TEXT NOT NULL DEFAULT '',
    message_id TEXT NOT NULL,
    message_hash TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    size BIGINT NOT NULL DEFAULT 0,
    packet TEXT NOT NULL,
    checksum TEXT NOT NULL,
    UNIQUE (recipient, sender, message_id)
);
CREATE INDEX IF NOT EXISTS messages_by_recipient ON messages (recipient, seq);
CREATE TABLE IF NOT EXISTS spent_stamps (
    stamp TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS spent_by_expiry ON spent_stamps (expires_at);
CREATE TABLE IF NOT EXISTS tombstones (
    recipient TEXT NOT NULL,
    sender TEXT NOT NULL,
    message_id TEXT NOT NULL,
    message_hash TEXT NOT NULL,
    signature_verified BOOLEAN NOT NULL DEFAULT false,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (recipient, sender, message_id)
);
CREATE INDEX IF NOT EXISTS tombstones_by_expiry ON tombstones (expires_at);
CREATE TABLE IF NOT EXISTS accounts (
    email TEXT PRIMARY KEY,
    disabled BOOLEAN NOT NULL DEFAULT false,
    max_messages BIGINT,
    max_bytes BIGINT
);
CREATE TABLE IF NOT EXISTS invites (
    digest TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS held_names (
    email TEXT PRIMARY KEY,
    until BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS reserved_names (
    name TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS outbound (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    domain TEXT NOT NULL,
    recipient TEXT NOT NULL,
    sender TEXT NOT NULL,
    message_id TEXT NOT NULL,
    message_hash TEXT NOT NULL,
    packet TEXT NOT NULL,
    checksum TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    queued_at BIGINT NOT NULL,
    next_attempt BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    delay_notified INTEGER NOT NULL DEFAULT 0,
    last_code TEXT,
    last_error TEXT,
    last_remote TEXT,
    lease_owner TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0,
    UNIQUE (recipient, sender, message_id)
);
CREATE INDEX IF NOT EXISTS outbound_due ON outbound (state, next_attempt);
-- Each mailbox's message count and bytes, kept by a trigger on messages, so a SEND checks
-- its quota in its own statement without counting the mailbox (store_postgres).
CREATE TABLE IF NOT EXISTS mailbox_usage (
    recipient TEXT PRIMARY KEY,
    messages BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0
);
CREATE OR REPLACE FUNCTION mmtp_mailbox_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO mailbox_usage AS u (recipient, messages, bytes)
            VALUES (NEW.recipient, 1, NEW.size)
            ON CONFLICT (recipient) DO UPDATE
            SET messages = u.messages + 1, bytes = u.bytes + excluded.bytes;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE mailbox_usage SET messages = messages - 1, bytes = bytes - OLD.size
            WHERE recipient = OLD.recipient;
    ELSE  -- TRUNCATE (by hand: the server never does it) fires no row trigger
        DELETE FROM mailbox_usage;
    END IF;
    RETURN NULL;
END $$;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgname = 'messages_truncated' AND tgrelid = 'messages'::regclass) THEN
        CREATE TRIGGER messages_truncated AFTER TRUNCATE ON messages
            FOR EACH STATEMENT EXECUTE FUNCTION mmtp_mailbox_counted();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgname = 'messages_counted' AND tgrelid = 'messages'::regclass) THEN
        -- The trigger first: it locks messages against writers until this transaction
        -- commits, so the count below misses no message stored meanwhile.
        CREATE TRIGGER messages_counted AFTER INSERT OR DELETE ON messages
            FOR EACH ROW EXECUTE FUNCTION mmtp_mailbox_counted();
        INSERT INTO mailbox_usage (recipient, messages, bytes)
            SELECT recipient, count(*), coalesce(sum(size), 0) FROM messages GROUP BY recipient
            ON CONFLICT (recipient) DO UPDATE
            SET messages = excluded.messages, bytes = excluded.bytes;
    END IF;
END $$;
INSERT INTO mmtp_meta (name, value) VALUES ('key_version', 0) ON CONFLICT DO NOTHING;
CREATE OR REPLACE FUNCTION mmtp_settings_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mmtp_meta SET value = value + 1 WHERE name = 'key_version';
    RETURN NULL;
END $$;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgname = 'keys_changed' AND tgrelid = 'keys'::regclass) THEN
        CREATE TRIGGER keys_changed AFTER INSERT OR UPDATE OR DELETE ON keys
            FOR EACH STATEMENT EXECUTE FUNCTION mmtp_settings_changed();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgname = 'accounts_changed' AND tgrelid = 'accounts'::regclass) THEN
        CREATE TRIGGER accounts_changed AFTER INSERT OR UPDATE OR DELETE ON accounts
            FOR EACH STATEMENT EXECUTE FUNCTION mmtp_settings_changed();
    END IF;
END $$;
"""


def prepare_schema(db: Any, where: str) -> None:
    """Create or upgrade the schema, in the caller's transaction on the connection `db`;
    refuse one newer than this code's (`where` names the database in that error)."""
    # Two processes starting together: one creates the schema, the other waits.
    db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
    found = 0
    if db.execute("SELECT to_regclass('mmtp_meta')").fetchone() != (None,):
        row = db.execute("SELECT value FROM mmtp_meta WHERE name = 'schema_version'").fetchone()
        found = int(row[0]) if row else 0
    check_schema_version(found, SCHEMA_VERSION, where)
    if found == SCHEMA_VERSION:
        # Up to date. Its DDL would change nothing, yet lock tables against the running
        # processes' SENDs: a worker restarted under load could deadlock with them.
        return
    db.execute(SCHEMA)
    db.execute(
        "INSERT INTO mmtp_meta (name, value) VALUES ('schema_version', %s)"
        " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (SCHEMA_VERSION,),
    )
