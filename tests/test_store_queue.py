"""The outbound queue's table (SPEC §8.5): queued with the stamp it spends, durable across a
reopen, due by time, finished rows kept for the dedupe, operator actions."""

from __future__ import annotations

from pathlib import Path

from mmtp_proto.store import Store
from mmtp_proto.store_queue import DONE, FAILED

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
