"""Two stores over one database, as two server processes have them, on each backend: the
loser of a race gets the protocol's answer (never a constraint error), and what one commits
the other sees at its next request (`look_again`), whatever it had cached."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import new_request, stored_fields

from mmtp_proto.errors import MMTPError
from mmtp_proto.storage import Storage, StoreError

pytestmark = pytest.mark.both_backends

BOB = "(bob)%(example.com)"
Opener = Callable[[], Storage]  # the `make_store` fixture (conftest.py)


def _add(
    store: Storage,
    message_id: str,
    stamp: str,
    message_hash: str = "0" * 64,
    quota: tuple[int, int] | None = None,
) -> int:
    fields = stored_fields(message_id, stamp, BOB, message_hash)
    return store.add_message(**fields, quota=quota)  # type: ignore[call-arg]


def _stage(store: Storage, message_id: str, stamp: str) -> Any:
    return store.stage_message(**stored_fields(message_id, stamp, BOB))


def test_a_stamp_spent_by_one_process_is_pow_replayed_for_the_other(make_store: Opener) -> None:
    one, two = make_store(), make_store()
    # Both looked before either wrote: neither saw the stamp spent.
    assert not one.is_spent("s") and not two.is_spent("s")
    _add(one, "a" * 32, "s")
    one.commit()
    with pytest.raises(MMTPError) as caught:
        _add(two, "b" * 32, "s")
    assert caught.value.code == "POW_REPLAYED"
    # The loser's transaction is still good: what else it staged commits.
    _add(two, "c" * 32, "t")
    two.commit()
    new_request(two)
    assert [m.packet["meta"]["messageId"] for m in two.list_messages(BOB, 0, 10)[0]] == [
        "a" * 32,
        "c" * 32,
    ]


def test_a_message_id_stored_by_one_process_is_refused_to_the_other(make_store: Opener) -> None:
    one, two = make_store(), make_store()
    _add(one, "a" * 32, "s1", message_hash="1" * 64)
    one.commit()
    with pytest.raises(MMTPError) as caught:
        _add(two, "a" * 32, "s2", message_hash="2" * 64)
    assert caught.value.code == "BAD_REQUEST"
    with pytest.raises(MMTPError) as caught:
        _add(two, "a" * 32, "s3", message_hash="1" * 64)
    assert caught.value.code == "INTERNAL" and "retry" in caught.value.message
    two.commit()
    # Neither refused attempt spent its stamp.
    assert not two.is_spent("s2") and not two.is_spent("s3")
    assert two.count_messages(BOB) == 1


def test_the_first_key_registration_wins_across_processes(make_store: Opener) -> None:
    one, two, three = make_store(), make_store(), make_store()
    for store in (one, two, three):
        new_request(store)
        assert store.get_key(BOB) is None
    one.put_key(BOB, "armored-1", "F1", 1)
    one.commit()
    with pytest.raises(MMTPError) as caught:
        two.put_key(BOB, "armored-2", "F2", 2)
    assert caught.value.code == "KEY_EXISTS"
    two.commit()
    # Registering the very key that won is no error: it is registered.
    three.put_key(BOB, "armored-1", "F1", 3)
    three.commit()
    for store in (one, two, three):
        new_request(store)
        assert store.get_key(BOB).fingerprint == "F1"  # type: ignore[union-attr]


def test_a_replacement_replaces_only_the_key_that_was_read(make_store: Opener) -> None:
    one, two = make_store(), make_store()
    one.put_key(BOB, "armored-1", "F1", 1)
    one.commit()
    for store in (one, two):
        new_request(store)
        assert store.get_key(BOB).armored == "armored-1"  # type: ignore[union-attr]
    one.put_key(BOB, "armored-2", "F2", 2)
    one.commit()
    with pytest.raises(MMTPError) as caught:
        two.put_key(BOB, "armored-3", "F3", 3)
    assert caught.value.code == "KEY_EXISTS"
    two.rollback()
    new_request(two)
    assert two.get_key(BOB).fingerprint == "F2"  # type: ignore[union-attr]


def test_a_key_replaced_by_one_process_is_seen_by_the_other_at_its_next_request(
    make_store: Opener,
) -> None:
    one, two = make_store(), make_store()
    one.put_key(BOB, "armored-1", "F1", 1)
    one.commit()
    new_request(two)
    assert two.get_key(BOB).fingerprint == "F1"  # type: ignore[union-attr]  (now cached)
    new_request(one)
    one.get_key(BOB)
    one.put_key(BOB, "armored-2", "F2", 2)
    one.commit()
    new_request(two)
    assert two.get_key(BOB).fingerprint == "F2"  # type: ignore[union-attr]


def test_a_mailbox_count_follows_what_other_processes_commit(make_store: Opener) -> None:
    one, two = make_store(), make_store()
    new_request(two)
    assert two.count_messages(BOB) == 0  # cached
    _add(one, "a" * 32, "s1")
    _add(one, "b" * 32, "s2")
    one.commit()
    new_request(two)
    assert two.count_messages(BOB) == 2
    one.delete_messages(BOB, ["a" * 32])
    one.commit()
    new_request(two)
    assert two.count_messages(BOB) == 1


def test_a_mailbox_takes_one_transaction_at_a_time_so_seq_follows_commit_order(
    make_store: Opener,
) -> None:
    """A RECEIVE cursor past seq N must never miss a message committed later with a lower
    seq: the second writer waits for the first's commit before it numbers its message."""
    one, two = make_store(), make_store()
    first = _add(one, "a" * 32, "s1")
    result: dict[str, int] = {}

    def second_writer() -> None:
        result["seq"] = _add(two, "b" * 32, "s2")
        two.commit()

    thread = threading.Thread(target=second_writer)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive(), "the second writer did not wait for the first's commit"
    one.commit()
    thread.join(30)
    assert not thread.is_alive()
    assert result["seq"] > first


def test_a_database_from_a_newer_version_is_refused_clearly(
    make_store: Opener, backend: str, tmp_path: Path, database: str | None
) -> None:
    make_store().close()
    if backend == "sqlite":
        with contextlib.closing(sqlite3.connect(tmp_path / "data" / "mmtp.db")) as db:
            db.execute("PRAGMA user_version = 99")
    else:
        assert database is not None
        with psycopg.connect(database, autocommit=True) as db:
            db.execute("UPDATE mmtp_meta SET value = 99 WHERE name = 'schema_version'")
    with pytest.raises(StoreError, match=r"schema version 99, newer than this server"):
        make_store()


def test_a_round_refused_a_busy_mailbox_waits_once_and_keeps_the_commit_order(
    make_store: Opener, backend: str
) -> None:
    """PostgreSQL pipelines a round's writes; those that found the mailbox busy are made
    again at the commit, all under one wait for the other process's commit."""
    if backend != "postgresql":
        pytest.skip("SQLite takes the whole database's write lock when a turn writes")
    one, two = make_store(), make_store()
    first = _add(one, "a" * 32, "s1")
    confirms = [_stage(two, c * 32, f"t{c}") for c in "bcd"]
    result: dict[str, list[int]] = {}

    def settle() -> None:
        two.commit()  # what the round staged before its writes are settled
        result["seqs"] = [confirm() for confirm in confirms]
        two.commit()

    thread = threading.Thread(target=settle)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive(), "the refused writes did not wait for the first's commit"
    one.commit()
    thread.join(30)
    assert not thread.is_alive()
    seqs = result["seqs"]
    assert seqs == sorted(seqs) and seqs[0] > first
    new_request(two)
    assert two.count_messages(BOB) == 4


def test_a_quota_holds_across_processes_filling_one_mailbox_at_once(
    make_store: Opener,
) -> None:
    """Two processes, each with its own view of the mailbox, SEND into it in their own
    transactions: the quota is checked in the write, under the mailbox's lock, so the second
    sees the first's message and the mailbox never holds more than its quota."""
    one, two = make_store(), make_store()
    for store in (one, two):
        new_request(store)
        assert store.mailbox_usage(BOB) == (0, 0)  # both looked before either wrote
    quota = (1, 10**9)
    _add(one, "a" * 32, "s1", quota=quota)
    one.commit()
    with pytest.raises(MMTPError) as caught:
        _add(two, "b" * 32, "s2", quota=quota)
    assert caught.value.code == "MAILBOX_FULL"
    two.commit()
    assert not two.is_spent("s2")
    new_request(two)
    assert two.mailbox_usage(BOB)[0] == 1
    one.delete_messages(BOB, ["a" * 32])
    one.commit()
    _add(two, "b" * 32, "s2", quota=quota)  # room again
    two.commit()
    new_request(one)
    assert one.mailbox_usage(BOB)[0] == 1


def test_a_postgres_database_of_schema_2_gets_its_mailbox_usage_counted(
    make_store: Opener, backend: str, database: str | None
) -> None:
    """Schema 3 keeps each mailbox's usage in a table (by a trigger); a database made by an
    older server has its mailboxes counted once, when the trigger is made."""
    if backend != "postgresql":
        pytest.skip("SQLite counts its mailboxes")
    store = make_store()
    _add(store, "a" * 32, "s1")
    _add(store, "b" * 32, "s2")
    store.commit()
    store.close()
    assert database is not None
    with psycopg.connect(database, autocommit=True) as db:
        # What a schema-2 database looks like.
        db.execute("DROP TRIGGER messages_counted ON messages")
        db.execute("DROP TABLE mailbox_usage")
        db.execute("UPDATE mmtp_meta SET value = 2 WHERE name = 'schema_version'")
    again = make_store()
    new_request(again)
    assert again.mailbox_usage(BOB)[0] == 2
    _add(again, "c" * 32, "s3", quota=(3, 10**9))
    with pytest.raises(MMTPError) as caught:
        _add(again, "d" * 32, "s4", quota=(3, 10**9))
    assert caught.value.code == "MAILBOX_FULL"


def test_a_send_whose_recipient_was_deleted_after_its_look_is_refused(make_store: Opener) -> None:
    """mmtp-admin deletes BOB's account (holding the name) between a SEND's look at BOB's
    key and its write (a signed SEND's verification lies between them): nothing is stored,
    for the name's next owner to read, and no stamp is spent. (test_pg_interleavings has the
    same race with the write waiting for the delete's mailbox lock.)"""
    admin, server = make_store(), make_store()
    admin.put_key(BOB, "armored", "f" * 40, 1)  # type: ignore[attr-defined]
    admin.commit()
    new_request(server)
    assert server.get_key(BOB) is not None
    admin.delete_account(BOB, hold_until=10**10)  # type: ignore[attr-defined]
    admin.commit()
    with pytest.raises(MMTPError) as refused:
        server.add_message(**stored_fields("a" * 32, "s1"))
    server.commit()
    assert refused.value.code == "UNKNOWN_RECIPIENT"
    new_request(server)
    assert server.find_message_hash(BOB, "a" * 32) is None and not server.is_spent("s1")
