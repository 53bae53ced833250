"""Review of the pipelined SEND path (session 4): stores as two server processes have them,
over one database, driven the way the loop drives them (rounds, group commit, settling).
Each test names the interleaving it checks."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from configs import make_config
from helpers import HeldAnswerText, new_request, stored_fields

from mmtp_proto import migrate
from mmtp_proto.errors import MMTPError
from mmtp_proto.pg_schema import mailbox_lock
from mmtp_proto.storage import Storage, StoreError
from mmtp_proto.store import Store

# SQLite takes the whole database's write lock for a turn's writes: none of this arises.
pytestmark = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)

BOB = "(bob)%(example.com)"
CAROL = "(carol)%(example.com)"
Opener = Callable[[], Storage]  # the `make_store` fixture (conftest.py)


def _add(store: Storage, message_id: str, stamp: str, recipient: str = BOB) -> int:
    return store.add_message(**stored_fields(message_id, stamp, recipient))  # type: ignore[call-arg]


def test_a_check_in_a_later_round_of_the_same_turn_sees_what_others_committed_before_it(
    make_store: Opener, backend: str
) -> None:
    """A turn answers up to GATHER_ROUNDS rounds before its one commit, so a round may start
    with the turn's SENDs still uncommitted. A CHECK in such a round commits them first,
    then must count what other processes committed before the round started."""
    one, two = make_store(), make_store()
    new_request(one)
    assert one.count_messages(BOB) == 0  # cached by this round's CHECK
    one.stage_message(**stored_fields("c" * 32, "s0", CAROL))  # the turn's SEND: a transaction
    _add(two, "a" * 32, "s1")
    two.commit()
    # The next round of the same turn: a CHECK, which commits the turn's SENDs first.
    one.look_again()
    one.commit()
    one.refresh()
    assert one.count_messages(BOB) == 1


def test_a_resend_meeting_the_delete_of_its_message_neither_deadlocks_nor_stores_it_again(
    make_store: Opener, backend: str
) -> None:
    """One process's round stored a message to BOB (it holds BOB's lock and its usage row)
    and then meets a re-send of a message BOB is deleting in another process at that very
    moment. Neither may wait for the other (design rule), and the re-send must not store
    the deleted message again: it is answered as the duplicate it is."""
    one, two = make_store(), make_store()
    _add(one, "k" * 32, "s0")
    one.commit()
    new_request(one)
    _add(one, "m" * 32, "s1")  # this round's first SEND to BOB: BOB's lock is held now
    outcome: dict[str, Any] = {}

    def delete() -> None:
        try:
            new_request(two)
            outcome["deleted"] = two.delete_messages(BOB, ["k" * 32], tombstone_seconds=3600)
            two.commit()
        except Exception as exc:  # reported below
            outcome["error"] = exc
            two.rollback()

    thread = threading.Thread(target=delete)
    thread.start()
    thread.join(0.3)
    refused: BaseException | None = None
    try:
        _add(one, "k" * 32, "s2")  # the re-send, with a fresh stamp
    except (MMTPError, StoreError) as exc:
        refused = exc
    if isinstance(refused, StoreError):
        one.rollback()
    else:
        one.commit()
    thread.join(30)
    assert not thread.is_alive()
    assert not isinstance(refused, StoreError), f"the SEND's round failed: {refused}"
    assert "error" not in outcome, f"the DELETE failed: {outcome.get('error')}"
    new_request(one)
    assert one.find_message_hash(BOB, "k" * 32) is None, "deleted, then stored again"
    assert one.find_delivered(BOB, "", "k" * 32) is not None


def test_a_connection_lost_mid_round_fails_that_round_once_and_the_next_one_reconnects(
    make_store: Opener, backend: str, database: str | None
) -> None:
    """The database restarts (here: the session is killed) while a round's writes are in the
    pipeline: the commit fails once (its answers are withdrawn), and the next round's
    writes go through on a new connection, with its mailbox lock tried afresh."""
    assert database is not None
    store = make_store()
    confirm = store.stage_message(**stored_fields("a" * 32, "s1"))
    with psycopg.connect(database, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (store._db.info.backend_pid,))  # type: ignore[attr-defined]
    rollbacks = store.rollbacks
    with pytest.raises(StoreError):
        confirm()
        store.commit()
    store.rollback()
    assert store.rollbacks == rollbacks + 1 and not store.pending
    new_request(store)
    # The first write after the loss finds a dead connection at most once more (libpq
    # notices the loss only when it uses the socket); after that it works.
    for attempt in range(2):
        try:
            seq = _add(store, "b" * 32, "s2")
            store.commit()
            break
        except StoreError:
            store.rollback()
            assert attempt == 0
    assert seq > 0
    new_request(store)
    assert store.find_message_hash(BOB, "a" * 32) is None
    assert store.count_messages(BOB) == 1


def test_a_migrated_database_counts_its_mailboxes(
    tmp_path: Path, backend: str, database: str | None
) -> None:
    """`mmtp-admin migrate` copies messages with COPY: the trigger counts them, so the
    quota the SEND's write checks starts right."""
    assert database is not None
    source = Store(tmp_path / "mmtp.db")
    for n in range(3):
        _add(source, f"{n}" * 32, f"s{n}")
    source.delete_messages(BOB, ["0" * 32])
    _add(source, "c" * 32, "s9", CAROL)
    source.commit()
    expected = {BOB: source.mailbox_usage(BOB), CAROL: source.mailbox_usage(CAROL)}
    source.close()
    migrate.migrate(tmp_path / "mmtp.db", database)
    with psycopg.connect(database, autocommit=True) as db:
        rows = db.execute("SELECT recipient, messages, bytes FROM mailbox_usage").fetchall()
    assert {r[0]: (int(r[1]), int(r[2])) for r in rows} == expected


def test_a_resend_during_the_delete_of_its_message_is_not_stored_again(
    make_store: Opener, backend: str
) -> None:
    """The DELETE is under way in another process (its tombstone and the delete not yet
    committed) when the re-send's write runs: the write must not store the message again
    once the delete commits (the tombstone makes it "duplicate", SPEC §5)."""
    one, two = make_store(), make_store()
    _add(one, "k" * 32, "s0")
    one.commit()
    new_request(two)
    two.delete_messages(BOB, ["k" * 32], tombstone_seconds=3600)  # not committed yet
    outcome: dict[str, Any] = {}

    def resend() -> None:
        try:
            new_request(one)
            outcome["seq"] = _add(one, "k" * 32, "s1")
        except MMTPError as exc:
            outcome["refused"] = exc.code
        except StoreError as exc:
            outcome["error"] = exc
        finally:
            one.commit()

    thread = threading.Thread(target=resend)
    thread.start()
    thread.join(0.3)
    two.commit()
    thread.join(30)
    assert not thread.is_alive()
    assert "error" not in outcome, outcome
    assert "seq" not in outcome, "the deleted message was stored again"
    new_request(one)
    assert one.find_message_hash(BOB, "k" * 32) is None


def test_a_failure_while_settling_withdraws_only_the_answers_it_could_have_made_untrue(
    make_store: Opener, backend: str, database: str | None
) -> None:
    """The round's COMMIT made its writes durable; settling then waits for a busy mailbox
    and the connection is lost meanwhile. The answers of the writes that COMMIT made durable
    stay "delivered" (a storage failure says "nothing was kept"); those whose writes were to
    be made again are withdrawn."""
    assert database is not None
    from mmtp_proto.group_commit import GroupCommit

    one, two = make_store(), make_store()
    _add(one, "a" * 32, "s0")  # holds BOB's lock until it commits
    commits: GroupCommit[HeldAnswerText] = GroupCommit(two)
    answers = [
        HeldAnswerText(two.stage_message(**stored_fields("c" * 32, "s1", CAROL))),
        HeldAnswerText(two.stage_message(**stored_fields("b" * 32, "s2"))),  # BOB busy: made again
    ]
    plain = HeldAnswerText(None)  # a durable answer without a pipelined write (a DELETE's)
    for answer in answers:
        commits.promise(answer, answer.settle)
    commits.promise(plain)
    withdrawn: list[HeldAnswerText] = []
    thread = threading.Thread(target=lambda: withdrawn.extend(commits.commit()))
    thread.start()
    thread.join(0.5)
    assert thread.is_alive(), "settling did not wait for BOB's lock"
    with psycopg.connect(database, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (two._db.info.backend_pid,))  # type: ignore[attr-defined]
    thread.join(30)
    one.commit()
    for answer in withdrawn:
        answer.withdraw()
    new_request(one)
    assert one.find_message_hash(CAROL, "c" * 32) is not None  # durable at the COMMIT
    assert one.find_message_hash(BOB, "b" * 32) is None
    assert answers[1].text == "nothing was kept"
    assert (answers[0].text, plain.text) == ("delivered", "delivered")


def test_a_statement_failing_mid_pipeline_fails_the_round_once_and_leaves_a_clean_store(
    make_store: Opener, backend: str
) -> None:
    """A write that the database rejects (not a refusal: an error) in the middle of a
    round's pipeline: the round's writes are all thrown away, once, and the next round
    starts a clean transaction, whose mailbox lock is tried afresh."""
    store = make_store()
    store.stage_message(**stored_fields("a" * 32, "s1"))
    bad = stored_fields("b" * 32, "s2")
    bad["stamp_expires_at"] = 2**70  # out of the column's range: the server errs
    rollbacks = store.rollbacks
    with pytest.raises(StoreError):
        store.stage_message(**bad)
        store.stage_message(**stored_fields("c" * 32, "s3", CAROL))
        store.commit()
    store.rollback()
    assert store.rollbacks == rollbacks + 1 and not store.pending
    new_request(store)
    assert _add(store, "d" * 32, "s4") > 0
    store.commit()
    new_request(store)
    assert [store.find_message_hash(BOB, c * 32) is not None for c in "abd"] == [
        False,
        False,
        True,
    ]
    assert store.find_message_hash(CAROL, "c" * 32) is None
    assert store.mailbox_usage(BOB)[0] == 1


def _report(recipient: str, message_id: str) -> dict[str, Any]:
    """A server-made packet (a DSN) as the delivery process stores it."""
    return {
        "recipient": recipient,
        "sender": "(postmaster)%(example.com)",
        "meta": {"messageId": message_id},
        "verification": {"messageHash": "1" * 64},
    }


def test_reports_stored_by_the_delivery_process_do_not_deadlock_a_server_round(
    make_store: Opener, backend: str
) -> None:
    """The delivery process records a batch of results in one transaction, reports (DSNs)
    into several mailboxes among them, while a server round SENDs to the same mailboxes in
    the other order. The usage rows the trigger keeps are locked by both: the reports must
    take the mailbox locks the SENDs take, so that the server's round (which never waits
    for a lock while holding one) is never waited for by a transaction it waits for."""
    server, delivery = make_store(), make_store()
    delivery.add_report(_report(CAROL, "r" * 32), 1)  # type: ignore[attr-defined]
    new_request(server)
    _add(server, "b" * 32, "s1")  # the round holds BOB's lock (and BOB's usage row)
    outcome: dict[str, Any] = {}

    def second_report() -> None:
        try:
            delivery.add_report(_report(BOB, "q" * 32), 1)  # type: ignore[attr-defined]
            delivery.commit()
        except StoreError as exc:
            outcome["error"] = exc
            delivery.rollback()

    thread = threading.Thread(target=second_report)
    thread.start()
    thread.join(0.3)
    try:
        _add(server, "c" * 32, "s2", CAROL)
        server.commit()
    except (MMTPError, StoreError) as exc:
        outcome["server"] = exc
        server.rollback()
        if isinstance(exc, MMTPError):
            raise
    thread.join(30)
    assert not thread.is_alive()
    assert outcome == {}, outcome


def test_a_quota_holds_for_pipelined_writes_of_two_processes_and_their_redo(
    make_store: Opener, backend: str
) -> None:
    """Both processes pipeline SENDs to one mailbox with room for three: the first's round
    holds the lock and fills it past its own third write; the second's writes, refused as
    busy, are made again after one wait and find the mailbox full. Exactly three stored."""
    one, two = make_store(), make_store()
    quota = (3, 10**9)

    def stage(store: Storage, message_id: str, stamp: str) -> Any:
        return store.stage_message(**stored_fields(message_id, stamp), quota=quota)

    ours = [stage(one, c * 32, f"s{c}") for c in "abcd"]
    ours[0]()  # its result read: the first round holds the lock before the second tries it
    theirs = [stage(two, c * 32, f"t{c}") for c in "ef"]
    results: dict[str, list[Any]] = {}

    def settle(name: str, store: Storage, confirms: list[Any]) -> None:
        store.commit()
        outcomes: list[Any] = []
        for confirm in confirms:
            try:
                outcomes.append(confirm())
            except MMTPError as exc:
                outcomes.append(exc.code)
        store.commit()
        results[name] = outcomes

    thread = threading.Thread(target=settle, args=("two", two, theirs))
    thread.start()
    thread.join(0.3)
    settle("one", one, ours)
    thread.join(30)
    assert not thread.is_alive()
    assert results["one"][3] == "MAILBOX_FULL" and results["two"] == ["MAILBOX_FULL"] * 2
    new_request(one)
    assert one.mailbox_usage(BOB)[0] == 3
    assert not any(one.is_spent(s) for s in ("sd", "te", "tf"))


def test_a_write_made_again_under_a_held_lock_does_not_read_another_mailboxs_answer(
    make_store: Opener, backend: str
) -> None:
    """The transaction waited for BOB's lock (a write made again), then tried CAROL's and
    found it busy: the transaction's `mmtp.mailbox` now holds CAROL's "no". A write to BOB
    refused before the wait, made again now under the lock already held, must be stored,
    not refused as a replayed stamp because it read CAROL's answer."""
    one, two, three = make_store(), make_store(), make_store()
    _add(one, "a" * 32, "s0")  # one holds BOB's lock
    _add(three, "c" * 32, "s1", CAROL)  # three holds CAROL's
    early = two.stage_message(**stored_fields("b" * 32, "s2"))  # BOB busy: to be made again
    waited: dict[str, Any] = {}

    def wait_for_bob() -> None:
        waited["seq"] = _add(two, "d" * 32, "s3")  # made again at once: waits for BOB

    thread = threading.Thread(target=wait_for_bob)
    thread.start()
    thread.join(0.3)
    one.commit()
    thread.join(30)
    assert not thread.is_alive() and waited["seq"] > 0
    late = two.stage_message(**stored_fields("e" * 32, "s4", CAROL))  # CAROL busy: "no"
    assert early() > 0  # BOB's lock is held by this transaction: stored now
    three.commit()
    assert late() > 0
    two.commit()
    new_request(two)
    assert two.count_messages(BOB) == 3 and two.count_messages(CAROL) == 2


def test_messages_emptied_by_hand_leave_no_usage_behind(
    make_store: Opener, backend: str, database: str
) -> None:
    """An operator emptying the mailboxes with psql (DELETE fires the row trigger, TRUNCATE
    only the statement one): the quota counts what is there afterwards."""
    store = make_store()
    for n in range(3):
        _add(store, f"{n:032x}", f"s{n}")
    store.commit()
    with psycopg.connect(database, autocommit=True) as db:
        db.execute("DELETE FROM messages WHERE message_id = %s", (f"{0:032x}",))
        new_request(store)
        assert store.mailbox_usage(BOB)[0] == 2
        db.execute("TRUNCATE messages")
    new_request(store)
    assert store.mailbox_usage(BOB) == (0, 0)


def test_two_delivery_processes_recording_reports_to_the_same_mailboxes_do_not_deadlock(
    make_store: Opener, backend: str, database: str, tmp_path: Path
) -> None:
    """Each delivery process records a batch of failures in one transaction, each failure's
    report going to its sender's mailbox under that mailbox's lock. One batch comes back in
    the order BOB, CAROL and the other in CAROL, BOB: were the locks taken in that order,
    each would hold one the other waits for, and PostgreSQL would end one as a deadlock."""
    from mmtp_proto.delivery import Delivery, Result, Verdict
    from mmtp_proto.federation import Federation
    from mmtp_proto.store_queue import FAILED

    config = make_config(tmp_path / "config", database=database, relay=True)
    federation = Federation(config, cert_path=None)
    queue, holder = make_store(), make_store()
    deliveries: list[Delivery] = []
    for n, senders in enumerate(((BOB, CAROL), (CAROL, BOB))):
        delivery = Delivery(config, federation, make_store, owner=f"host:{n}:x")
        batch = []
        for sender in senders:
            message_id = f"{n}{sender[1]}".ljust(32, "0")
            packet = {"sender": sender, "recipient": "(dan)%(far.test)"}
            packet["meta"] = {"messageId": message_id}
            queue.enqueue(
                domain="far.test",
                recipient=packet["recipient"],
                sender=sender,
                message_id=message_id,
                message_hash="1" * 64,
                packet=packet,
                now=1,
                expires_at=10**9,
                stamp_key=f"stamp-{message_id}",
                stamp_expires_at=10**9,
            )
            queue.commit()
            (job,) = queue.claim_jobs(delivery.owner, 1, 600, 1)
            batch.append(Result(job, Verdict.PERMANENT, "NO_SUCH_USER", "unknown", None, 2))
        delivery._results.put(batch)
        deliveries.append(delivery)
    # Both wait behind whoever holds the first sender's lock, so their transactions overlap.
    first = min((BOB, CAROL), key=mailbox_lock)
    holder._db.execute("SELECT pg_advisory_lock(%s, %s)", mailbox_lock(first))
    threads = [
        threading.Thread(target=delivery._apply_results, args=(make_store(),))
        for delivery in deliveries
    ]
    for thread in threads:
        thread.start()
        thread.join(0.3)
    holder._db.execute("SELECT pg_advisory_unlock(%s, %s)", mailbox_lock(first))
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    federation.close()
    new_request(queue)
    assert [job["state"] for job in queue.queue_list()] == [FAILED] * 4
    assert queue.mailbox_usage(BOB)[0] == 2 and queue.mailbox_usage(CAROL)[0] == 2


def test_opening_the_store_does_not_wait_for_a_transaction_in_flight(
    make_store: Opener, backend: str
) -> None:
    """A worker (re)started while others serve: opening an up-to-date database runs no DDL,
    whose table locks would wait for every SEND in flight and hold back every later one (and
    could deadlock with them)."""
    one = make_store()
    new_request(one)
    _add(one, "a" * 32, "s1")  # an open transaction that wrote to messages
    opened: list[Storage] = []
    thread = threading.Thread(target=lambda: opened.append(make_store()))
    thread.start()
    thread.join(10)
    waited = thread.is_alive()
    one.commit()
    thread.join(30)
    assert not waited and len(opened) == 1
