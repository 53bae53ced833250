"""The store on its own, on each backend: counts, paging, what a rollback leaves behind, and
the group commit that tells which promises a failure took back."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mmtp_proto.group_commit import GroupCommit
from mmtp_proto.storage import Storage, StoreError

pytestmark = pytest.mark.both_backends

BOB = "(bob)%(example.com)"
Opener = Callable[[], Storage]  # the `make_store` fixture (conftest.py)


def _add(store: Storage, n: int) -> None:
    store.add_message(
        recipient=BOB,
        message_id=f"{n:032x}",
        message_hash="0" * 64,
        packet={"meta": {"messageId": f"{n:032x}"}},
        received_at=1,
        stamp_key=f"stamp-{n}",
        stamp_expires_at=10,
    )


def test_mailbox_count_follows_adds_deletes_and_rollbacks(make_store: Opener) -> None:
    store = make_store()
    assert store.count_messages(BOB) == 0
    for n in range(3):
        _add(store, n)
    assert store.count_messages(BOB) == 3
    store.commit()
    assert store.delete_messages(BOB, [f"{1:032x}", f"{99:032x}"]) == 1
    assert store.count_messages(BOB) == 2
    _add(store, 7)
    assert store.count_messages(BOB) == 3
    store.rollback()  # the delete and the add are gone again
    assert not store.pending and store.rollbacks == 1
    assert store.count_messages(BOB) == 3
    assert [m.packet["meta"]["messageId"][-1] for m in store.list_messages(BOB, 0, 10)[0]] == [
        "0",
        "1",
        "2",
    ]
    store.close()


def test_a_committed_message_survives_reopening(make_store: Opener) -> None:
    store = make_store()
    _add(store, 5)
    store.commit()
    store.close()
    reopened = make_store()
    assert reopened.count_messages(BOB) == 1
    assert reopened.is_spent("stamp-5")
    reopened.close()


def test_a_page_stops_at_its_byte_budget_but_holds_at_least_one(make_store: Opener) -> None:
    store = make_store()
    for n in range(5):
        _add(store, n)
    one = len('{"meta":{"messageId":"' + "0" * 32 + '"}}')
    page, more = store.list_messages(BOB, 0, 100, max_bytes=2 * one)
    assert (len(page), more) == (2, True)
    page, more = store.list_messages(BOB, page[-1].seq, 100, max_bytes=1)
    assert (len(page), more) == (1, True)
    page, more = store.list_messages(BOB, 0, 100, max_bytes=100 * one)
    assert (len(page), more) == (5, False)
    store.close()


def test_a_rolled_back_key_is_forgotten(make_store: Opener) -> None:
    store = make_store()
    store.put_key(BOB, "armored-1", "F1", 1)
    store.commit()
    store.put_key(BOB, "armored-2", "F2", 2)
    assert store.get_key(BOB).fingerprint == "F2"
    store.rollback()
    assert store.get_key(BOB).fingerprint == "F1"
    assert store.get_key("(nobody)%(example.com)") is None
    store.close()


def test_purge_forgets_only_stamps_that_can_no_longer_verify(make_store: Opener) -> None:
    store = make_store()
    for n in range(3):
        _add(store, n)  # each stamp expires at 10
    store.add_message(
        recipient=BOB,
        message_id=f"{9:032x}",
        message_hash="0" * 64,
        packet={"meta": {}},
        received_at=1,
        stamp_key="stamp-late",
        stamp_expires_at=100,
    )
    store.commit()
    assert store.purge_expired_stamps(10) == 0  # still valid at its last second
    assert store.purge_expired_stamps(11) == 3
    store.commit()
    assert not store.is_spent("stamp-0")
    assert store.is_spent("stamp-late")
    assert store.count_messages(BOB) == 4  # messages stay; only the spent-stamp records go
    store.close()


def test_group_commit_keeps_promises_a_commit_makes_good(make_store: Opener) -> None:
    store = make_store()
    commits: GroupCommit[str] = GroupCommit(store)
    _add(store, 1)
    commits.promise("a")
    _add(store, 2)
    commits.promise("b")
    assert commits.pending and commits.lost() == []
    assert commits.commit() == []
    assert not commits.pending and store.count_messages(BOB) == 2
    store.rollback()  # nothing staged, nothing promised: nothing to withdraw
    assert commits.lost() == [] and commits.commit() == []
    store.close()


def test_group_commit_returns_what_a_failed_commit_took_back(make_store: Opener) -> None:
    store = make_store()
    commits: GroupCommit[str] = GroupCommit(store)
    _add(store, 1)
    commits.promise("a")
    commits.promise("b")
    real_commit = store.commit

    def failing_commit() -> None:
        store.commit = real_commit  # type: ignore[method-assign]
        store.rollback()
        raise StoreError("disk I/O error (simulated)")

    store.commit = failing_commit  # type: ignore[method-assign]
    assert commits.commit() == ["a", "b"]
    assert store.count_messages(BOB) == 0
    # The promises are settled: the next turn starts clean.
    _add(store, 2)
    commits.promise("c")
    assert commits.commit() == []
    assert store.count_messages(BOB) == 1
    store.close()


def test_group_commit_returns_what_a_rollback_in_the_turn_took_back(make_store: Opener) -> None:
    store = make_store()
    commits: GroupCommit[str] = GroupCommit(store)
    _add(store, 1)
    commits.promise("a")
    assert commits.abort() == ["a"]
    assert commits.lost() == []  # told once
    _add(store, 2)
    commits.promise("b")
    assert commits.commit() == []
    assert [m.packet["meta"]["messageId"] for m in store.list_messages(BOB, 0, 10)[0]] == [
        f"{2:032x}"
    ]
    store.close()
