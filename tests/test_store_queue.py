"""The outbound queue's table (SPEC §8.5): queued with the stamp it spends, durable across a
reopen, due by time, finished rows kept for the dedupe, operator actions, and the leased
claims of delivery processes (on both backends)."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from mmtp_proto.store import Store
from mmtp_proto.store_queue import DONE, FAILED, QUEUE_SCHEMA

PACKET = {"meta": {"messageId": "ab" * 16}, "sender": "(a)%(a.test)", "recipient": "(b)%(b.test)"}


def enqueue(store: Store, n: int, now: int = 1000) -> int:
    return store.enqueue(
        domain="b.test",
        recipient=f"(b{n})%(b.test)",
        sender="(a)%(a.test)",
        message_id=f"{n:032x}",
        message_hash="h" * 64,
        packet=PACKET,
        now=now,
        expires_at=now + 3600,
        stamp_key=f"stamp-{n}",
        stamp_expires_at=now + 3600,
    )


def test_a_queued_job_survives_a_reopen_and_its_stamp_is_spent(tmp_path: Path):
    store = Store(tmp_path / "db")
    job = enqueue(store, 1)
    store.commit()
    store.close()
    store = Store(tmp_path / "db")
    assert store.is_spent("stamp-1")
    [due] = store.due_jobs(1000)
    assert (due.id, due.packet, due.attempts) == (job, PACKET, 0)
    assert store.find_queued_hash("(b1)%(b.test)", "(a)%(a.test)", f"{1:032x}") == "h" * 64
    store.close()


def test_retry_finish_and_purge(tmp_path: Path):
    store = Store(tmp_path / "db")
    first, second, third = (enqueue(store, n) for n in (1, 2, 3))
    store.retry_job(first, 2000, code="X", error="later", remote=None, delay_notified=True)
    store.finish_job(second, DONE, code=None, error=None, remote="r:1")
    store.finish_job(third, FAILED, code="UNKNOWN_RECIPIENT", error="no", remote="r:1")
    store.commit()
    assert store.due_jobs(1000) == []
    assert [j.id for j in store.due_jobs(2000)] == [first]
    assert store.next_due() == 2000
    # Finished rows keep their key (the dedupe) until the stamp has expired everywhere.
    assert store.find_queued_hash("(b2)%(b.test)", "(a)%(a.test)", f"{2:032x}") is not None
    assert store.purge_finished_jobs(1000 + 3601) == 2
    store.commit()
    assert [row["id"] for row in store.queue_list()] == [first]
    store.close()


def test_operator_retry_now_and_remove(tmp_path: Path):
    store = Store(tmp_path / "db")
    job = enqueue(store, 1)
    store.retry_job(job, 9999, code="X", error="later", remote=None, delay_notified=False)
    assert store.due_jobs(1000) == []
    assert store.queue_retry_now(1000) == 1
    assert [j.id for j in store.due_jobs(1000)] == [job]
    assert store.queue_remove(job) is True
    assert store.queue_remove(job) is False
    store.commit()
    assert store.queue_list() == []
    store.close()


# ---------------------------------------------------------------------------- leased claims


def open_queue(tmp_path: Path, database: str | None) -> Any:
    """A fresh store on this test's backend (another connection to the same queue each
    time it is called)."""
    if database is None:
        return Store(tmp_path / "db")
    from mmtp_proto.store_postgres import PostgresStore

    return PostgresStore(database)


@pytest.mark.both_backends
def test_a_claim_leases_due_jobs_to_one_owner_until_the_lease_ends(tmp_path, database):
    store = open_queue(tmp_path, database)
    ids = [enqueue(store, n) for n in (1, 2, 3)]
    store.commit()
    other = open_queue(tmp_path, database)
    first = store.claim_jobs("one", 1000, 60, 2)
    assert [j.id for j in first] == ids[:2]
    # Leased jobs are nobody else's; what is left is.
    assert [j.id for j in other.claim_jobs("two", 1000, 120, 10)] == [ids[2]]
    assert other.claim_jobs("two", 1059, 60, 10) == []
    assert store.next_due() == 1060
    listed = {row["id"]: row["leasedBy"] for row in other.queue_list()}
    assert listed == {ids[0]: "one", ids[1]: "one", ids[2]: "two"}
    # The lease ends: "one" stalled, "two" takes its jobs, and "one" can no longer finish.
    taken = other.claim_jobs("two", 1060, 60, 10)
    assert [j.id for j in taken] == ids[:2]
    assert store.finish_job(ids[0], DONE, code=None, error=None, remote=None, owner="one") is False
    assert (
        store.retry_job(
            ids[1], 2000, code="X", error="e", remote=None, delay_notified=False, owner="one"
        )
        is False
    )
    store.commit()
    assert other.finish_job(ids[0], DONE, code=None, error=None, remote="r", owner="two")
    assert other.finish_job(ids[0], DONE, code=None, error=None, remote="r", owner="two") is False
    assert other.retry_job(
        ids[1], 2000, code="X", error="e", remote=None, delay_notified=False, owner="two"
    )
    other.commit()
    rows = {row["id"]: row for row in store.queue_list()}
    assert rows[ids[0]]["state"] == DONE and rows[ids[0]]["attempts"] == 1
    assert rows[ids[1]]["attempts"] == 1 and rows[ids[1]]["leasedBy"] is None
    assert rows[ids[1]]["nextAttempt"] == 2000
    store.close()
    other.close()


@pytest.mark.both_backends
def test_renewed_and_released_claims(tmp_path, database):
    store = open_queue(tmp_path, database)
    ids = [enqueue(store, n) for n in (1, 2)]
    store.commit()
    other = open_queue(tmp_path, database)
    assert len(store.claim_jobs("one", 1000, 10, 10)) == 2
    assert store.extend_leases("one", [ids[0]], 1100) == 1
    store.release_jobs("one", [ids[1]])
    store.commit()
    assert [j.id for j in other.claim_jobs("two", 1011, 1000, 10)] == [ids[1]]
    assert other.extend_leases("two", [ids[0]], 5000) == 0  # not its claim
    other.commit()
    assert [j.id for j in other.claim_jobs("two", 1100, 10, 10)] == [ids[0]]
    store.close()
    other.close()


@pytest.mark.both_backends
def test_concurrent_claimers_never_share_a_job(tmp_path, database):
    store = open_queue(tmp_path, database)
    ids = {enqueue(store, n) for n in range(200)}
    store.commit()
    stores = [open_queue(tmp_path, database) for _ in range(4)]
    got: list[list[int]] = [[] for _ in stores]
    start = threading.Barrier(len(stores))

    def claim(k: int) -> None:
        start.wait()
        while batch := stores[k].claim_jobs(f"owner{k}", 1000, 60, 7):
            got[k].extend(j.id for j in batch)

    threads = [threading.Thread(target=claim, args=(k,)) for k in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    claimed = [i for part in got for i in part]
    assert sorted(claimed) == sorted(ids)
    for s in (store, *stores):
        s.close()


def test_a_schema_3_queue_gets_its_lease_columns(tmp_path: Path):
    db = sqlite3.connect(tmp_path / "db")
    db.executescript(
        QUEUE_SCHEMA.replace("    lease_owner TEXT,\n", "").replace(
            "    lease_until INTEGER NOT NULL DEFAULT 0,\n", ""
        )
    )
    db.execute("PRAGMA user_version=3")
    db.close()
    store = Store(tmp_path / "db")
    job = enqueue(store, 1)
    store.commit()
    assert [j.id for j in store.claim_jobs("one", 1000, 60, 10)] == [job]
    store.close()
    db = sqlite3.connect(tmp_path / "db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 4
    db.close()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_migrate_moves_the_queue_to_postgresql(tmp_path: Path, database):
    from mmtp_proto.migrate import migrate
    from mmtp_proto.store_postgres import PostgresStore

    store = Store(tmp_path / "mmtp.db")
    first, second = enqueue(store, 1), enqueue(store, 2)
    store.finish_job(second, DONE, code=None, error=None, remote="r:1")
    store.commit()
    store.close()
    report = migrate(tmp_path / "mmtp.db", database)
    assert report.counts["outbound"] == 2
    target = PostgresStore(database)
    assert [(r["id"], r["state"]) for r in target.queue_list()] == [
        (first, "queued"),
        (second, DONE),
    ]
    [job] = target.claim_jobs("one", 1000, 60, 10)
    assert (job.id, job.packet) == (first, PACKET)
    # New jobs are numbered after the copied ones; the spent stamps came along.
    assert enqueue(target, 3) > second
    assert target.is_spent("stamp-1")
    target.commit()
    target.close()


@pytest.mark.both_backends
def test_due_domains_and_claims_for_some_domains_only(tmp_path, database):
    store = open_queue(tmp_path, database)
    for n in (1, 2):
        enqueue(store, n)
    store.enqueue(
        domain="c.test",
        recipient="(c)%(c.test)",
        sender="(a)%(a.test)",
        message_id="c" * 32,
        message_hash="h" * 64,
        packet=PACKET,
        now=1000,
        expires_at=4600,
        stamp_key="stamp-c",
        stamp_expires_at=4600,
    )
    store.commit()
    assert store.due_domains(1000) == {"b.test": 2, "c.test": 1}
    [job] = store.claim_jobs("one", 1000, 60, 10, domains=["c.test"])
    assert job.domain == "c.test"
    assert store.due_domains(1000) == {"b.test": 2}
    assert store.claim_jobs("one", 1000, 60, 10, domains=[]) == []
    assert store.due_domains(999) == {}
    store.close()


@pytest.mark.both_backends
def test_claims_of_a_dead_process_on_this_host_are_taken_back_at_start(tmp_path, database):
    import socket
    import subprocess
    import sys

    from mmtp_proto.delivery_process import reclaim_from_the_dead

    host = socket.gethostname()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    dead_pid = int(gone.stdout)
    store = open_queue(tmp_path, database)
    ids = [enqueue(store, n) for n in (1, 2, 3)]
    store.commit()
    owners = [f"{host}:{dead_pid}:aa", f"{host}:{os.getpid()}:bb", f"elsewhere:{dead_pid}:cc"]
    for owner in owners:
        assert len(store.claim_jobs(owner, 1000, 3600, 1)) == 1
    # Only the dead process of this host loses its claim; a live one and another host's
    # (whose pids cannot be checked from here) keep theirs until their leases end.
    me = f"{host}:{os.getpid()}:dd"
    assert reclaim_from_the_dead(open_queue(tmp_path, database), me, 1001) == 1
    assert [j.id for j in store.claim_jobs(me, 1001, 60, 10)] == [ids[0]]
    held = {row["id"]: row["leasedBy"] for row in store.queue_list()}
    assert held == {ids[0]: me, ids[1]: owners[1], ids[2]: owners[2]}
    store.close()
