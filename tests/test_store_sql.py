"""The SQL both backends share (`store_sql`), and how many round trips a SEND's store calls
cost on PostgreSQL, where each one is a wait for another process (issue 9)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
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
    """The store's psycopg connection, counting round trips: a statement, or a pipeline."""

    def __init__(self, db: Any) -> None:
        self._db = db
        self.trips = 0
        self._piped = False

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        if not self._piped:
            self.trips += 1
        return self._db.execute(*args, **kwargs)

    @contextlib.contextmanager
    def pipeline(self) -> Iterator[None]:
        self.trips += 1
        self._piped = True
        try:
            with self._db.pipeline():
                yield
        finally:
            self._piped = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


@pytest.fixture
def store(tmp_path: Path, database: str | None) -> Iterator[Any]:
    store = open_store(database, tmp_path / "data")
    try:
        yield store
    finally:
        store.close()


def _send(store: Any, n: int) -> None:
    """The store calls of one unsigned SEND, in the handler's order (send.py): the write
    itself refuses a copy delivered already, so there is no look for one before it."""
    store.refresh()
    assert store.get_key(BOB) is not None
    assert not store.account(BOB).disabled
    store.account(BOB)
    store.mailbox_usage(BOB)
    store.add_message(
        recipient=BOB,
        sender=ALICE,
        message_id=f"{n:032x}",
        message_hash="0" * 64,
        packet={"n": n},
        received_at=1,
        stamp_key=f"stamp-{n}",
        stamp_expires_at=10,
    )


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_postgres_send_takes_one_round_trip_and_three_more_per_round(store: Any) -> None:
    store.put_key(BOB, "armor", "F" * 40, 1)
    store.commit()
    counting = _CountingConnection(store._db)
    store._db = counting
    store.look_again()  # a round of requests starts
    # The round's first SEND: key with account and version, mailbox size, BEGIN with the
    # write.
    _send(store, 1)
    assert counting.trips == 3
    # Later SENDs of the same round: key, account and mailbox size known, transaction open.
    _send(store, 2)
    _send(store, 3)
    assert counting.trips == 3 + 2 * 1
    store.commit()
    assert counting.trips == 6
    new_request(store)
    assert [m.packet["n"] for m in store.list_messages(BOB, 0, 10)[0]] == [1, 2, 3]


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
