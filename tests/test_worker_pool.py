"""The worker pool on its own: real processes, real deadlines, a real memory limit.

Jobs are standard-library functions, so nothing here depends on OpenPGP: `time.sleep` runs past
a deadline, `bytearray` of 2 GiB runs out of memory, `os._exit` is a crash.
"""

from __future__ import annotations

import os
import selectors
import time
from collections.abc import Iterator

import pytest

from mmtp_proto.deferred import BUSY, CRASHED, DEADLINE, Job, JobResult
from mmtp_proto.worker_pool import PoolWorker, WorkerPool


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    pool = WorkerPool(2, memory_limit=512 * 1024 * 1024, deadline=1.0, queue_wait=5.0).start()
    yield pool
    pool.close()


def run(
    pool: WorkerPool, jobs: list[Job], timeout: float = 30.0, arrivals: list[int] | None = None
) -> list[JobResult]:
    """Submit the jobs, drive the pool as the server loop does, return results in job order
    (and the job indexes in the order their results came, in `arrivals`)."""
    selector = selectors.DefaultSelector()
    pool.attach(selector)
    tickets = [pool.submit(job) for job in jobs]
    results: dict[int, JobResult] = {}
    end = time.monotonic() + timeout
    while len(results) < len(tickets) and time.monotonic() < end:
        deadline = pool.next_deadline()
        wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
        for key, mask in selector.select(wait):
            assert isinstance(key.data, PoolWorker)
            pool.on_event(key.data, mask)
        pool.expire()
        results.update(pool.take_results())
    selector.close()
    if arrivals is not None:
        arrivals.extend(tickets.index(t) for t in results)
    return [results[t] for t in tickets]


def test_jobs_run_in_other_processes_and_report_their_cpu(pool):
    (result,) = run(pool, [Job(os.getpid, ())])
    assert result.ok and result.value != os.getpid() and result.value in pool.pids()
    assert result.cpu_seconds >= 0


def test_a_job_past_its_deadline_kills_and_replaces_its_worker(pool):
    before = set(pool.pids())
    started = time.monotonic()
    slow, quick = run(pool, [Job(time.sleep, (30,), "a"), Job(sum, ([1, 2],), "b")])
    assert slow.failure == DEADLINE and slow.cpu_seconds == pool.deadline
    assert time.monotonic() - started < 10
    assert quick.value == 3  # the other worker went on
    assert len(pool.pids()) == 2 and set(pool.pids()) != before and pool.replaced == 1


def test_a_job_over_the_memory_limit_crashes_only_its_worker(pool):
    (result,) = run(pool, [Job(bytearray, (2 * 1024**3,))])
    assert result.failure == CRASHED and "memory" in result.detail
    (after,) = run(pool, [Job(sum, ([2, 3],))])
    assert after.value == 5


def test_a_worker_that_dies_is_replaced(pool):
    crashed, after = run(pool, [Job(os._exit, (3,)), Job(sum, ([1],))])
    assert crashed.failure == CRASHED
    assert after.value == 1
    assert len(pool.pids()) == 2


def test_queued_jobs_are_taken_from_each_source_in_turn():
    pool = WorkerPool(1, deadline=5.0).start()
    try:
        flood = [Job(time.sleep, (0.05,), "flood") for _ in range(6)]
        arrivals: list[int] = []
        results = run(pool, [*flood, Job(sum, ([1],), "other")], arrivals=arrivals)
        assert all(r.ok for r in results)
        # The other source's job waited for one flood job in the queue, not for all five.
        assert arrivals.index(6) == 2, arrivals
    finally:
        pool.close()


def test_a_job_queued_too_long_is_refused_as_busy():
    pool = WorkerPool(1, deadline=5.0, queue_wait=0.3).start()
    try:
        first, waiting = run(pool, [Job(time.sleep, (1.0,), "a"), Job(sum, ([1],), "b")])
        assert first.ok and waiting.failure == BUSY
    finally:
        pool.close()


def test_a_cancelled_job_gives_no_result(pool):
    selector = selectors.DefaultSelector()
    pool.attach(selector)
    ticket = pool.submit(Job(time.sleep, (0.2,)))
    queued = [pool.submit(Job(time.sleep, (0.2,))) for _ in range(3)]
    pool.cancel(ticket)
    for t in queued:
        pool.cancel(t)
    assert pool.in_flight == 0
    time.sleep(0.4)
    for key, mask in selector.select(0.1):
        pool.on_event(key.data, mask)
    assert pool.take_results() == []
    selector.close()


def test_close_stops_every_worker(pool):
    pids = pool.pids()
    pool.close()
    time.sleep(0.2)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_jobs_sent_ahead_get_their_own_results():
    pool = WorkerPool(1, deadline=5.0).start()
    try:
        assert run(pool, [Job(abs, (-1,), "quick")])[0].value == 1  # now a quick source
        results = run(pool, [Job(abs, (-n,), "quick") for n in range(40)])
        assert [r.value for r in results] == list(range(40))
    finally:
        pool.close()
