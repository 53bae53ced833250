"""The SQL both backends share (`store_sql`), and how many round trips a SEND's store calls
cost on PostgreSQL, where each one is a wait for another process (issue 9)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import new_request

from mmtp_proto.backends import open_store
from mmtp_proto.errors import MMTPError
from mmtp_proto.store_sql import KEY_INSERT, UNSEEN, key_write, pg

BOB = "(bob)%(example.com)"
ALICE = "(alice)%(example.com)"


def test_pg_turns_placeholders_into_psycopgs_and_doubles_a_literal_percent() -> None:
    assert pg("SELECT 1 WHERE a = ? AND b LIKE 'x%'") == "SELECT 1 WHERE a = %s AND b LIKE 'x%%'"


def test_key_write_replaces_only_what_the_request_read() -> None:
    args = (BOB, "new", "F" * 40, 5)
    sql, params = key_write(*args, UNSEEN)
    assert sql.startswith(KEY_INSERT) and "DO UPDATE" in sql and params == args
    sql, params = key_write(*args, None)
    assert sql.endswith("ON CONFLICT DO NOTHING") and params == args
    sql, params = key_write(*args, "old")
    assert sql.endswith("WHERE keys.armored = ?") and params == (*args, "old")


class _CountingConnection:
    """The store's psycopg connection, counting round trips: each time the store waits for
    the server (a statement outside pipeline mode, a pipeline sync or end, or a result
    read before it came back)."""

    def __init__(self, db: Any) -> None:
        self._db = db
        self.trips = 0
        self.statements: list[str] = []

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        self.statements.append(str(args[0]))
        if self._db._pipeline is None:
            self.trips += 1
            return self._db.execute(*args, **kwargs)
        return _CountingCursor(self, self._db.execute(*args, **kwargs))

    @contextlib.contextmanager
    def pipeline(self) -> Iterator[Any]:
        with self._db.pipeline() as pipeline:
            try:
                yield _CountingPipeline(self, pipeline)
            finally:
                self.trips += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


class _CountingPipeline:
    def __init__(self, counter: _CountingConnection, pipeline: Any) -> None:
        self._counter = counter
        self._pipeline = pipeline

    def sync(self) -> None:
        self._counter.trips += 1
        self._pipeline.sync()


class _CountingCursor:
    def __init__(self, counter: _CountingConnection, cursor: Any) -> None:
        self._counter = counter
        self._cursor = cursor

    def fetchone(self) -> Any:
        if self._cursor.pgresult is None:
            self._counter.trips += 1
        return self._cursor.fetchone()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


@pytest.fixture
def store(tmp_path: Path, database: str | None) -> Iterator[Any]:
    store = open_store(database, tmp_path / "data")
    try:
        yield store
    finally:
        store.close()


def _send(store: Any, n: int, stamp: str | None = None) -> Callable[[], object] | None:
    """The store calls of one unsigned SEND, in the handler's order (send.py): the write
    itself refuses a copy delivered already, so there is no look for one before it."""
    store.refresh()
    assert store.get_key(BOB) is not None
    assert not store.account(BOB).disabled
    store.account(BOB)  # the quota
    return store.stage_message(  # type: ignore[no-any-return]
        recipient=BOB,
        sender=ALICE,
        message_id=f"{n:032x}",
        message_hash="0" * 64,
        packet={"n": n},
        received_at=1,
        stamp_key=stamp or f"stamp-{n}",
        stamp_expires_at=10,
        quota=(100, 10**9),
    )


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_postgres_round_of_sends_takes_two_round_trips_in_all(store: Any) -> None:
    store.put_key(BOB, "armor", "F" * 40, 1)
    store.commit()
    counting = _CountingConnection(store._db)
    store._db = counting
    store.look_again()  # a round of requests starts
    # The round's first SEND reads the key with its account and the version; its writes
    # (the mailbox lock, then the quota, stamp and message) are pipelined, BEGIN with them,
    # and so are the later SENDs'.
    confirms = [_send(store, n) for n in (1, 2, 3)]
    assert counting.trips == 1
    # COMMIT brings every result back with it.
    store.commit()
    assert counting.trips == 2
    assert [confirm() for confirm in confirms if confirm] == [1, 2, 3]
    assert counting.trips == 2
    # The mailbox's lock was tried once for the three.
    assert sum("pg_try_advisory_xact_lock" in sql for sql in counting.statements) == 1
    new_request(store)
    assert [m.packet["n"] for m in store.list_messages(BOB, 0, 10)[0]] == [1, 2, 3]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_pipelined_write_refused_is_told_after_the_commit_and_stores_nothing(
    store: Any,
) -> None:
    store.put_key(BOB, "armor", "F" * 40, 1)
    store.commit()
    store.look_again()
    stored = _send(store, 1, stamp="s")
    replayed = _send(store, 2, stamp="s")
    taken = _send(store, 1, stamp="t")  # the id of the first, another stamp
    store.commit()
    assert stored is not None and replayed is not None and taken is not None
    stored()
    with pytest.raises(MMTPError) as caught:
        replayed()
    assert caught.value.code == "POW_REPLAYED"
    with pytest.raises(MMTPError) as caught:
        taken()
    assert caught.value.code == "INTERNAL"  # the same content: "being stored; retry"
    store.commit()  # what settling wrote: the stamp given back
    assert not store.is_spent("t") and store.is_spent("s")
    new_request(store)
    assert store.count_messages(BOB) == 1
    store.delete_messages(BOB, ["1".rjust(32, "0")], tombstone_seconds=60)
    store.commit()
    store.look_again()
    again = _send(store, 1, stamp="u")
    store.commit()
    assert again is not None
    with pytest.raises(MMTPError) as caught:
        again()
    assert "deleted" in caught.value.message
    assert not store.is_spent("u")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_a_replayed_stamp_is_refused_by_the_write_itself(store: Any) -> None:
    """No look before the write (the handler makes none): the write refuses the replay."""
    common = dict(recipient=BOB, message_hash="0" * 64, packet={}, received_at=1)
    store.add_message(**common, message_id="a" * 32, stamp_key="s", stamp_expires_at=10)
    with pytest.raises(MMTPError) as caught:
        store.add_message(**common, message_id="b" * 32, stamp_key="s", stamp_expires_at=10)
    assert caught.value.code == "POW_REPLAYED"
    store.commit()
    assert store.count_messages(BOB) == 1


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_cached_accounts_cost_one_version_check_per_round(store: Any) -> None:
    store.put_key(BOB, "armor", "F" * 40, 1)
    store.put_key(ALICE, "armor", "E" * 40, 1)
    store.commit()
    new_request(store)
    store.get_key(BOB)
    store.get_key(ALICE)
    counting = _CountingConnection(store._db)
    store._db = counting
    # A signed SEND's continuation in a new round: the sender's key checks the version; the
    # rest is cached, and the next request of the round reads nothing.
    new_request(store)
    assert store.get_key(ALICE) is not None
    assert not store.account(ALICE).disabled
    assert not store.account(BOB).disabled
    assert counting.trips == 1
    store.refresh()
    assert store.get_key(BOB) is not None
    assert counting.trips == 1


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_an_account_changed_by_anyone_is_seen_at_the_next_request(
    store: Any, database: str
) -> None:
    import psycopg

    store.put_key(BOB, "armor", "F" * 40, 1)
    store.commit()
    new_request(store)
    assert not store.account(BOB).disabled
    with psycopg.connect(database, autocommit=True) as other:
        other.execute("INSERT INTO accounts (email, disabled) VALUES (%s, true)", (BOB,))
    assert not store.account(BOB).disabled  # this request keeps what it read
    new_request(store)
    assert store.account(BOB).disabled
    with psycopg.connect(database, autocommit=True) as other:
        other.execute("UPDATE accounts SET max_messages = 3 WHERE email = %s", (BOB,))
    new_request(store)
    assert store.get_key(BOB) is not None
    assert store.account(BOB).max_messages == 3
    with psycopg.connect(database, autocommit=True) as other:
        other.execute("DELETE FROM keys WHERE email = %s", (BOB,))
    new_request(store)
    assert store.get_key(BOB) is None
