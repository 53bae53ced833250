"""SPEC revision 2 §5 mailbox rules: the byte quota, duplicates keyed by (recipient, sender,
messageId) and checked before every stamp check, and tombstones of deleted messages.

Each test fails on the revision-1 server: it had no byte quota, answered a re-send after
DELETE with POW_REPLAYED, a retry after a lost OK with POW_EXPIRED once the stamp's life was
over, and let any sender squat a messageId it had seen.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ALICE, BOB, CAROL, DAVE, DAVE_REMOTE, as_sender, hex_id, make_packet
from rules_harness import Server, use_database

from mmtp_proto.limits import DEFAULT_STAMP_VALIDITY_SECONDS
from mmtp_proto.store import Store, stored_text

VALIDITY = DEFAULT_STAMP_VALIDITY_SECONDS
# The tests on a harness server run on SQLite and on PostgreSQL; the SQLite store's own tests
# (the revision-1 upgrade, the key cache) on SQLite only.
pytestmark = pytest.mark.both_backends


@pytest.fixture
def harness_backend(database: str | None, monkeypatch: pytest.MonkeyPatch) -> str | None:
    return use_database(monkeypatch, database)


@pytest.fixture
def server(tmp_path: Path, harness_backend: str | None) -> Iterator[Server]:
    srv = Server(tmp_path / "data", now=time.time())
    srv.connect().register(BOB)
    yield srv
    srv.close()


def fetched(srv: Server, email: str = BOB) -> list[dict]:
    conn = srv.connect()
    assert conn.auth(email) == "OK"
    return conn.request("RECEIVE", email=email)["messages"]


def delete(srv: Server, *ids: str, email: str = BOB) -> int:
    conn = srv.connect()
    assert conn.auth(email) == "OK"
    return conn.request("DELETE", email=email, messageIds=list(ids))["deleted"]


# ---------------------------------------------------------------------------- byte quota


def test_a_send_past_the_byte_quota_is_mailbox_full(server):
    conn = as_sender(server.connect())
    first = make_packet(DAVE, BOB, body="x" * 3000)
    assert conn.send(first)["status"] == "OK"
    count, size = server.store.mailbox_usage(BOB)
    # What is counted is the packet as stored, byte for byte.
    assert (count, size) == (1, len(stored_text(fetched(server)[0]).encode()))
    server.config.mailbox_max_bytes = 2 * size + 100
    assert conn.send(make_packet(DAVE, BOB, body="y" * 3000))["status"] == "OK"
    third = make_packet(DAVE, BOB, body="z" * 3000)
    assert conn.code("SEND", packet=third) == "MAILBOX_FULL"
    # The message count is far from its limit: the bytes decided.
    assert server.store.mailbox_usage(BOB)[0] == 2 < server.config.mailbox_max_messages
    # Deleting makes room (the stamp of the refused SEND was not spent).
    assert delete(server, first["meta"]["messageId"]) == 1
    assert conn.send(third)["status"] == "OK"


def test_the_byte_count_survives_a_restart(server):
    conn = as_sender(server.connect())
    for n in range(3):
        assert conn.send(make_packet(DAVE, BOB, body=f"{n}" * 2000))["status"] == "OK"
    usage = server.store.mailbox_usage(BOB)
    server.close()
    again = Server(server.data_dir, now=time.time(), mailbox_max_bytes=usage[1] + 10)
    try:
        assert again.store.mailbox_usage(BOB) == usage
        big = make_packet(DAVE, BOB, body="w" * 2000)
        assert as_sender(again.connect()).code("SEND", packet=big) == "MAILBOX_FULL"
    finally:
        again.close()


def test_an_operator_quota_for_one_mailbox_wins(server):
    server.store.set_account(BOB, max_messages=1)
    server.store.commit()
    conn = as_sender(server.connect())
    assert conn.send(make_packet(DAVE, BOB))["status"] == "OK"
    assert conn.code("SEND", packet=make_packet(DAVE, BOB)) == "MAILBOX_FULL"


# ---------------------------------------------------------------------------- duplicates


def test_a_resend_after_delete_meets_the_tombstone(server):
    conn = as_sender(server.connect())
    packet = make_packet(DAVE, BOB)
    assert conn.send(packet)["duplicate"] is False
    assert delete(server, packet["meta"]["messageId"]) == 1
    again = conn.send(packet)
    assert again["status"] == "OK" and again["duplicate"] is True, again
    assert fetched(server) == []  # nothing stored, and no "was it read?" oracle
    other = make_packet(DAVE, BOB, body="else", message_id=packet["meta"]["messageId"])
    assert conn.code("SEND", packet=other) == "BAD_REQUEST"


def test_a_retry_after_a_lost_ok_is_a_duplicate_even_once_its_stamp_expired(server):
    conn = as_sender(server.connect())
    packet = make_packet(DAVE, BOB)
    assert conn.send(packet)["status"] == "OK"
    # The stamp is spent and, a little later, expired too; the packet's timestamp is still
    # within stampValiditySeconds + 1 h.
    assert conn.send(packet)["duplicate"] is True
    server.clock.now += VALIDITY + 60
    answer = conn.send(packet)
    assert answer["status"] == "OK" and answer["duplicate"] is True, answer
    assert len(fetched(server)) == 1


@pytest.mark.usefixtures("harness_backend")
def test_another_sender_cannot_squat_a_message_id(tmp_path):
    srv = Server(tmp_path / "data", now=time.time())
    try:
        carol, alice = srv.connect(), srv.connect()
        for who in (BOB, CAROL, ALICE):
            assert carol.register(who) == "OK"
        assert carol.auth(CAROL) == "OK" and alice.auth(ALICE) == "OK"
        message_id = hex_id(1)
        squat = make_packet(CAROL, BOB, body="first", message_id=message_id)
        real = make_packet(ALICE, BOB, body="real", message_id=message_id)
        assert carol.send(squat)["duplicate"] is False
        answer = alice.send(real)
        assert answer["status"] == "OK" and answer["duplicate"] is False, answer
        assert sorted(m["sender"] for m in fetched(srv)) == sorted([ALICE, CAROL])
    finally:
        srv.close()


def test_tombstones_expire_with_the_spent_stamps(server):
    conn = as_sender(server.connect())
    packet = make_packet(DAVE, BOB)
    assert conn.send(packet)["status"] == "OK"
    message_id = packet["meta"]["messageId"]
    assert delete(server, message_id) == 1
    store = server.store
    until = packet["meta"]["timestamp"] + VALIDITY + 3600
    store.purge_expired_stamps(until)
    store.commit()
    assert store.find_delivered(BOB, DAVE, message_id) == (
        packet["verification"]["messageHash"],
        False,
    )
    store.purge_expired_stamps(until + 1)
    store.commit()
    assert store.find_delivered(BOB, DAVE, message_id) is None


# ---------------------------------------------------------------------------- upgrade

_REVISION_1 = """
CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, recipient TEXT NOT NULL,
    message_id TEXT NOT NULL, message_hash TEXT NOT NULL, received_at INTEGER NOT NULL,
    packet TEXT NOT NULL, checksum TEXT NOT NULL, UNIQUE (recipient, message_id));
CREATE INDEX messages_by_recipient ON messages (recipient, seq);
"""


def test_a_revision_1_database_is_upgraded_keeping_sequence_numbers(tmp_path):
    path = tmp_path / "mmtp.db"
    db = sqlite3.connect(path)
    db.executescript(_REVISION_1)
    packet = make_packet("(Dave)%(remote.org)", BOB)
    text = stored_text(packet)
    db.execute(
        "INSERT INTO messages VALUES (3, ?, ?, ?, 1, ?, 'x')",
        (BOB, packet["meta"]["messageId"], packet["verification"]["messageHash"], text),
    )
    # Messages 4-9 were received and deleted: their numbers may never come back.
    db.execute("UPDATE sqlite_sequence SET seq = 9 WHERE name = 'messages'")
    db.commit()
    db.close()
    store = Store(path, fsync=False)
    try:
        assert store.mailbox_usage(BOB) == (1, len(text.encode()))
        assert store.find_delivered(BOB, DAVE_REMOTE, packet["meta"]["messageId"]) is not None
        seq = store.add_message(
            recipient=BOB,
            sender=DAVE_REMOTE,
            message_id=hex_id(2),
            message_hash="0" * 64,
            packet={"x": 1},
            received_at=2,
            stamp_key="s",
            stamp_expires_at=3,
        )
        assert seq == 10
    finally:
        store.close()


def test_the_key_cache_is_bounded_in_bytes(tmp_path, monkeypatch):
    from mmtp_proto import store as store_module

    monkeypatch.setattr(store_module, "KEY_CACHE_BYTES", 10_000)
    store = Store(tmp_path / "mmtp.db", fsync=False)
    try:
        for n in range(20):
            store.put_key(f"({n})%(localhost)", "k" * 3000, f"{n:040X}", 0)
            assert store._key_bytes <= 10_000
            assert store._key_bytes == sum(len(r.armored) for r in store._keys.values())
        store.commit()
        assert store.get_key("(0)%(localhost)").armored == "k" * 3000
    finally:
        store.close()
