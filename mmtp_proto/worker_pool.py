"""A bounded pool of worker processes for work that must not run on the server's loop thread.

The server starts the workers before it serves (multiprocessing's forkserver: no fork of a
threaded parent, and each worker starts in milliseconds with `pgp_jobs` already imported).
Each worker limits its own address space (`RLIMIT_AS`) and runs one job at a time. The loop
hands jobs over with `submit`, registers the workers' sockets in its selector (`attach`), and
learns of results from `on_event`; `expire` kills and replaces a worker whose job ran past its
deadline, and a worker that dies is replaced too. Nothing here blocks: sockets are
non-blocking on the pool's side and messages are length-prefixed pickles.

Queued jobs are taken from each source in turn, so one client's flood of slow jobs waits
behind itself, not in front of everyone else. A worker may be sent a few jobs ahead (it then
never sleeps between them, which matters on a busy machine), but only jobs of sources whose
last job was quick, and only behind such jobs: a slow job runs on an idle worker, alone.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import pickle
import selectors
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from .deferred import BUSY, CRASHED, DEADLINE, Job, JobResult
from .worker_process import HEADER, MAX_MESSAGE, PoolWorker, Task, recv_exact, serve

log = logging.getLogger("mmtp.workers")

_AFFINITY_MEMORY = 1024
# Jobs sent ahead to one worker, and what counts as a quick job (worker CPU seconds).
PIPELINE = 8
QUICK_JOB = 0.05
_SPEED_MEMORY = 4096


class WorkerPool:
    def __init__(
        self,
        size: int = 2,
        *,
        memory_limit: int = 512 * 1024 * 1024,
        deadline: float = 2.0,
        queue_wait: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.size = size
        self.memory_limit = memory_limit
        self.deadline = deadline
        self.queue_wait = queue_wait
        self.clock = clock
        self.replaced = 0  # workers replaced after a deadline or a crash (for tests, logs)
        self._workers: list[PoolWorker] = []
        self._respawn_at = 0.0  # one that died starting is not replaced at once (no storm)
        self._dead: list[Any] = []  # killed processes, reaped without blocking
        self._queue: OrderedDict[str, deque[Task]] = OrderedDict()
        self._tasks: dict[int, Task] = {}
        self._done: list[tuple[int, JobResult]] = []
        self._quick: OrderedDict[str, bool] = OrderedDict()
        self._tickets = itertools.count(1)
        self._selector: selectors.BaseSelector | None = None
        self._context = multiprocessing.get_context("forkserver")
        # The main module too: otherwise every new worker imports it again before its first job.
        self._context.set_forkserver_preload(["__main__", "mmtp_proto.pgp_jobs"])

    # ------------------------------------------------------------------ lifecycle

    def start(self, wait: float = 30.0) -> WorkerPool:
        """Start every worker (before the loop serves) and wait until they are ready, up to
        `wait` seconds; OSError if a process cannot start."""
        while len(self._workers) < self.size:
            self._workers.append(self._spawn())
        end = time.monotonic() + wait
        for worker in self._workers:
            worker.sock.settimeout(max(0.001, end - time.monotonic()))
            try:
                header = recv_exact(worker.sock, HEADER.size)
                if header is not None:
                    recv_exact(worker.sock, HEADER.unpack(header)[0])
                    worker.ready = True
            except TimeoutError:
                pass  # it says so later, through the loop
            finally:
                worker.sock.setblocking(False)
            if not worker.ready and worker.process.exitcode is not None:
                self.close()
                raise OSError(
                    "the worker processes exit as they start (a program embedding the server "
                    "must start it under `if __name__ == '__main__':`)"
                )
        return self

    def _spawn(self) -> PoolWorker:
        ours, theirs = socket.socketpair()
        try:
            process = self._context.Process(
                target=serve, args=(theirs, self.memory_limit), name="mmtp-worker", daemon=True
            )
            process.start()
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        worker = PoolWorker(process, ours)
        if self._selector is not None:
            self._selector.register(ours, selectors.EVENT_READ, worker)
        return worker

    def attach(self, selector: selectors.BaseSelector) -> None:
        """Let the loop's selector wake on results; tags are the `PoolWorker`s."""
        self._selector = selector
        for worker in self._workers:
            selector.register(worker.sock, self._events(worker), worker)

    def pids(self) -> list[int]:
        return [w.pid for w in self._workers if w.pid is not None]

    def close(self, timeout: float = 0.5) -> None:
        """Stop every worker: EOF first (they exit at once between jobs), then SIGKILL."""
        processes = [w.process for w in self._workers] + self._dead
        for worker in self._workers:
            self._forget(worker)
        self._workers.clear()
        self._dead.clear()
        self._queue.clear()
        self._tasks.clear()
        self._done.clear()
        end = time.monotonic() + timeout
        for process in processes:
            process.join(max(0.0, end - time.monotonic()))
            if process.exitcode is None:
                process.kill()
                process.join(1.0)
            with contextlib.suppress(ValueError):
                process.close()

    # ------------------------------------------------------------------ jobs

    in_flight = property(lambda self: len(self._tasks), doc="Jobs submitted, not finished.")

    def submit(self, job: Job) -> int:
        """Queue a job; its result comes back from `on_event` or `expire` with this ticket."""
        task = Task(next(self._tickets), job, self.clock())
        self._tasks[task.ticket] = task
        self._queue.setdefault(job.source, deque()).append(task)
        self._start_queued()
        return task.ticket

    def cancel(self, ticket: int) -> None:
        """The asker went away: drop the job if it has not started, ignore its result if it has."""
        task = self._tasks.pop(ticket, None)
        if task is None:
            return
        task.cancelled = True
        queue = self._queue.get(task.job.source)
        if queue is not None and task in queue:
            queue.remove(task)
            if not queue:
                del self._queue[task.job.source]

    def next_deadline(self) -> float | None:
        """When `expire` next has something to do (monotonic clock), if ever."""
        times = [w.tasks[0].started_at + self.deadline for w in self._workers if w.tasks]
        times += [q[0].queued_at + self.queue_wait for q in self._queue.values() if q]
        return min(times, default=None)

    def take_results(self) -> list[tuple[int, JobResult]]:
        """(ticket, result) of the jobs finished since the last call, cancelled ones left out."""
        done, self._done = self._done, []
        return done

    def on_event(self, worker: PoolWorker, mask: int) -> None:
        """The selector says `worker`'s socket is ready: move bytes, collect a result."""
        if worker not in self._workers:
            return
        if mask & selectors.EVENT_WRITE:
            self._write(worker)
        if mask & selectors.EVENT_READ and worker in self._workers:
            self._read(worker)
        if worker in self._workers:
            self._update(worker)
        self._start_queued()

    def expire(self) -> None:
        """Kill workers past their job's deadline, refuse jobs queued too long, reap the dead."""
        now = self.clock()
        for worker in list(self._workers):
            task = worker.tasks[0] if worker.tasks else None
            if task is not None and now >= task.started_at + self.deadline:
                worker.tasks.popleft()
                log.warning(
                    "a job from %s ran past its %.1f s deadline; replacing its worker",
                    task.job.source,
                    self.deadline,
                )
                self._finish(task, JobResult(failure=DEADLINE, cpu_seconds=self.deadline))
                self._replace(worker)
        for source in list(self._queue):
            queue = self._queue[source]
            while queue and now >= queue[0].queued_at + self.queue_wait:
                self._finish(queue.popleft(), JobResult(failure=BUSY))
            if not queue:
                del self._queue[source]
        self._reap()
        self._start_queued()

    # ------------------------------------------------------------------ internals

    def _start_queued(self) -> None:
        placed = True
        while self._queue and placed:
            placed = False
            # Jobs are sent ahead only while no job of a slow or new source waits: such a
            # job needs an idle worker, and must not wait for pipelines to drain.
            ahead = all(self._quick.get(source, False) for source in self._queue)
            for source, queue in self._queue.items():
                worker = self._worker_for(queue[0], ahead)
                if worker is None:
                    continue
                task = queue.popleft()
                # Take sources in turn: this one goes to the back of the line.
                del self._queue[source]
                if queue:
                    self._queue[source] = queue
                self._send(worker, task)
                placed = True
                break

    def _worker_for(self, task: Task, ahead: bool) -> PoolWorker | None:
        task.quick = self._quick.get(task.job.source, False)
        ready = [w for w in self._workers if w.ready]
        idle = [w for w in ready if not w.tasks]
        affinity = task.job.affinity
        if idle:
            return next((w for w in idle if affinity and affinity in w.tags), idle[0])
        if not (task.quick and ahead):
            return None
        room = [w for w in ready if len(w.tasks) < PIPELINE and all(t.quick for t in w.tasks)]
        return min(room, key=lambda w: len(w.tasks), default=None)

    def _send(self, worker: PoolWorker, task: Task) -> None:
        affinity = task.job.affinity
        if affinity:
            worker.tags[affinity] = None
            worker.tags.move_to_end(affinity)
            if len(worker.tags) > _AFFINITY_MEMORY:
                worker.tags.popitem(last=False)
        data = pickle.dumps((task.job.func, task.job.args), protocol=pickle.HIGHEST_PROTOCOL)
        if not worker.tasks:
            task.started_at = self.clock()
        worker.tasks.append(task)
        worker.outbuf += HEADER.pack(len(data)) + data
        self._write(worker)
        if worker in self._workers:
            self._update(worker)

    def _write(self, worker: PoolWorker) -> None:
        while worker.outbuf:
            try:
                sent = worker.sock.send(worker.outbuf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._crashed(worker, "its socket failed")
                return
            del worker.outbuf[:sent]

    def _read(self, worker: PoolWorker) -> None:
        eof = False
        while not eof:
            try:
                chunk = worker.sock.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                chunk = b""
            eof = not chunk
            worker.inbuf += chunk
        self._parse(worker)
        if eof and worker in self._workers:
            self._crashed(worker, "it exited")

    def _parse(self, worker: PoolWorker) -> None:
        while len(worker.inbuf) >= HEADER.size:
            size = HEADER.unpack_from(worker.inbuf)[0]
            if size > MAX_MESSAGE:
                self._crashed(worker, "it sent a broken message")
                return
            if len(worker.inbuf) < HEADER.size + size:
                break
            body = bytes(worker.inbuf[HEADER.size : HEADER.size + size])
            del worker.inbuf[: HEADER.size + size]
            failure, value, detail, cpu = pickle.loads(body)
            if not worker.tasks:
                worker.ready = True
                continue
            task = worker.tasks.popleft()
            now = self.clock()
            if worker.tasks:
                worker.tasks[0].started_at = now
            # Judged by the worker's CPU time: on a busy machine the wall clock says little.
            self._quick[task.job.source] = failure is None and cpu < QUICK_JOB
            self._quick.move_to_end(task.job.source)
            if len(self._quick) > _SPEED_MEMORY:
                self._quick.popitem(last=False)
            if now >= task.started_at + self.deadline:
                # Late is late, whether or not the loop looked at the clock in time.
                failure, value, cpu = DEADLINE, None, max(cpu, self.deadline)
            self._finish(task, JobResult(value, failure, detail, cpu))
            if failure == CRASHED:
                # It exits after saying so: no job may be sent to it meanwhile.
                self._replace(worker)
                return

    def _crashed(self, worker: PoolWorker, why: str) -> None:
        task = worker.tasks.popleft() if worker.tasks else None
        if task is not None:
            log.warning(
                "a worker died during a job from %s (%s); replacing it", task.job.source, why
            )
            elapsed = self.clock() - task.started_at
            self._finish(task, JobResult(failure=CRASHED, detail=why, cpu_seconds=elapsed))
        elif not worker.ready:
            log.error("a worker died as it started (%s); trying again in a second", why)
            self._respawn_at = self.clock() + 1.0
        else:
            log.warning("an idle worker died (%s); replacing it", why)
        self._replace(worker)

    def _finish(self, task: Task, result: JobResult) -> None:
        if self._tasks.pop(task.ticket, None) is not None and not task.cancelled:
            self._done.append((task.ticket, result))

    def _replace(self, worker: PoolWorker) -> None:
        # Its running job has been answered; those sent after it never ran: queue them again.
        for task in reversed(worker.tasks):
            if task.ticket in self._tasks:
                queue = self._queue.setdefault(task.job.source, deque())
                queue.appendleft(task)
                self._queue.move_to_end(task.job.source, last=False)
        worker.tasks.clear()
        index = self._workers.index(worker)
        self._forget(worker)
        with contextlib.suppress(OSError, ValueError, AttributeError):
            worker.process.kill()
        self._dead.append(worker.process)
        self.replaced += 1
        if self.clock() < self._respawn_at:
            del self._workers[index]  # _reap starts it later
            return
        try:
            self._workers[index] = self._spawn()
        except OSError as exc:
            # Retried on the next expire(): the pool runs short meanwhile, never stops.
            log.error("could not start a replacement worker: %s", exc)
            del self._workers[index]

    def _forget(self, worker: PoolWorker) -> None:
        if self._selector is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(worker.sock)
        with contextlib.suppress(OSError):
            worker.sock.close()

    def _reap(self) -> None:
        for process in list(self._dead):
            process.join(0)
            if process.exitcode is not None:
                self._dead.remove(process)
                with contextlib.suppress(ValueError):
                    process.close()
        while len(self._workers) < self.size and self.clock() >= self._respawn_at:
            try:
                self._workers.append(self._spawn())
            except OSError as exc:
                log.error("could not start a replacement worker: %s", exc)
                return

    def _events(self, worker: PoolWorker) -> int:
        return selectors.EVENT_READ | (selectors.EVENT_WRITE if worker.outbuf else 0)

    def _update(self, worker: PoolWorker) -> None:
        if self._selector is None:
            return
        events = self._events(worker)
        with contextlib.suppress(KeyError, ValueError):
            if self._selector.get_key(worker.sock).events != events:
                self._selector.modify(worker.sock, events, worker)
