"""More interleavings of stores as several server and delivery processes have them over one
PostgreSQL database (see test_pipelined_sends for the pattern): each test names the race."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from configs import make_config
from helpers import HeldAnswerText, new_request, stored_fields

from mmtp_proto.delivery_process import _open_store
from mmtp_proto.group_commit import GroupCommit
from mmtp_proto.storage import Storage

pytestmark = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)

BOB = "(bob)%(example.com)"
CAROL = "(carol)%(example.com)"
Opener = Callable[[], Storage]  # the `make_store` fixture (conftest.py)


def test_a_send_made_again_after_its_account_was_deleted_is_not_stored(
    make_store: Opener, backend: str
) -> None:
    """The operator deletes BOB's account (mmtp-admin, another process) while a server round
    SENDs to BOB: the round checked BOB's key before, and its write finds the mailbox busy
    (the delete holds BOB's lock). Made again after the delete committed, the write must not
    store a message into the deleted mailbox, which whoever registers the name next reads."""
    admin, server = make_store(), make_store()
    admin.put_key(BOB, "armored", "f" * 40, 1)  # type: ignore[attr-defined]
    admin.commit()
    new_request(server)
    assert server.get_key(BOB) is not None  # the SEND's check: BOB has a mailbox
    admin.delete_account(BOB, hold_until=10**10)  # type: ignore[attr-defined]  # holds BOB's lock
    commits: GroupCommit[HeldAnswerText] = GroupCommit(server)
    answer = HeldAnswerText(server.stage_message(**stored_fields("a" * 32, "s1")))  # busy
    commits.promise(answer, answer.settle)
    thread = threading.Thread(target=lambda: commits.commit())
    thread.start()
    thread.join(0.3)
    assert thread.is_alive(), "settling did not wait for BOB's lock"
    admin.commit()
    thread.join(30)
    assert not thread.is_alive()
    new_request(admin)
    assert admin.find_message_hash(BOB, "a" * 32) is None, "stored into a deleted mailbox"
    assert admin.mailbox_usage(BOB)[0] == 0
    assert answer.text == "UNKNOWN_RECIPIENT"


def test_a_report_waiting_behind_the_delete_of_its_account_is_not_stored(
    make_store: Opener, backend: str
) -> None:
    """The delivery process records a report (DSN) for BOB while the operator deletes BOB's
    account: the report waits for BOB's lock, which the delete holds. Stored once the delete
    committed, it would sit in the deleted mailbox until the name's next owner reads it."""
    admin, delivery = make_store(), make_store()
    admin.put_key(BOB, "armored", "f" * 40, 1)  # type: ignore[attr-defined]
    admin.commit()
    admin.delete_account(BOB, hold_until=10**10)  # type: ignore[attr-defined]
    report = {
        "recipient": BOB,
        "sender": "(postmaster)%(example.com)",
        "meta": {"messageId": "r" * 32},
        "verification": {"messageHash": "1" * 64},
    }

    def record() -> None:
        delivery.add_report(report, 2)  # type: ignore[attr-defined]
        delivery.commit()

    thread = threading.Thread(target=record)
    thread.start()
    thread.join(0.3)
    assert thread.is_alive(), "the report did not wait for BOB's lock"
    admin.commit()
    thread.join(30)
    assert not thread.is_alive()
    new_request(admin)
    assert admin.mailbox_usage(BOB) == (0, 0)


def test_a_commit_failing_after_a_redo_keeps_the_answers_that_rest_on_the_first_commit(
    make_store: Opener, backend: str, database: str
) -> None:
    """Settling made BOB's write again (BOB was busy), then settled CAROL's from the
    COMMIT's own result; the connection is lost before the COMMIT of what settling wrote.
    BOB's answer is withdrawn, but CAROL's write was durable and its settling read nothing
    since: "delivered" is true there, and "nothing was kept" would not be."""
    one, two = make_store(), make_store()
    one.add_message(**stored_fields("a" * 32, "s0"))  # holds BOB's lock until it commits
    commits: GroupCommit[HeldAnswerText] = GroupCommit(two)
    answers = [
        HeldAnswerText(two.stage_message(**stored_fields("b" * 32, "s1"))),  # BOB busy: made again
        HeldAnswerText(two.stage_message(**stored_fields("c" * 32, "s2", CAROL))),
    ]
    for answer in answers:
        commits.promise(answer, answer.settle)

    def lose_the_connection() -> None:  # after settling, before the COMMIT of the redo
        with psycopg.connect(database, autocommit=True) as admin:
            pid = two._db.info.backend_pid  # type: ignore[attr-defined]
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

    commits.promise(HeldAnswerText(None), lose_the_connection)
    withdrawn: list[HeldAnswerText] = []
    thread = threading.Thread(target=lambda: withdrawn.extend(commits.commit()))
    thread.start()
    thread.join(0.5)
    assert thread.is_alive(), "settling did not wait for BOB's lock"
    one.commit()
    thread.join(30)
    assert not thread.is_alive()
    for answer in withdrawn:
        answer.withdraw()
    new_request(one)
    assert one.find_message_hash(BOB, "b" * 32) is None
    assert one.find_message_hash(CAROL, "c" * 32) is not None  # durable at the COMMIT
    assert [answer.text for answer in answers] == ["nothing was kept", "delivered"]


def test_a_transaction_that_starts_with_a_write_after_a_restart_goes_to_a_new_connection(
    make_store: Opener, backend: str, database: str
) -> None:
    """The database restarted (here: the session is killed) while the store was idle. A
    transaction whose first statement is a write (a DELETE, the delivery process recording
    a batch's outcomes and reports) has nothing to lose yet: it must go to a new connection,
    not fail once (a DELETE answered "storage error", a batch's outcomes dropped until their
    leases end and the jobs go out again)."""
    store = make_store()
    store.add_message(**stored_fields("a" * 32, "s1"))
    store.commit()
    with psycopg.connect(database, autocommit=True) as admin:
        pid = store._db.info.backend_pid  # type: ignore[attr-defined]
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        # Gone for sure before the store is used again.
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            time.sleep(0.01)
    assert store.delete_messages(BOB, ["a" * 32], tombstone_seconds=60) == 1
    store.commit()
    new_request(store)
    assert store.mailbox_usage(BOB) == (0, 0)


def test_the_delivery_process_commits_without_waiting_for_the_disk_after_a_reconnect_too(
    database: str, backend: str, tmp_path: Path
) -> None:
    """Nothing the delivery process writes carries a promise to a client (a lost outcome is
    redone), so its commits do not wait for the disk: still so on the connection a reconnect
    opens, not only on the first."""
    store = _open_store(make_config(tmp_path / "data", database=database))
    try:
        assert store._read("SHOW synchronous_commit").fetchone() == ("off",)
        with psycopg.connect(database, autocommit=True) as admin:
            pid = store._db.info.backend_pid
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                time.sleep(0.01)
        store.commit()
        assert store._read("SHOW synchronous_commit").fetchone() == ("off",)
        assert store._db.info.backend_pid != pid
    finally:
        store.close()
