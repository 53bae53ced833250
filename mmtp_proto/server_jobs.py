"""The server loop's side of requests answered later (`deferred.Pending`): worker jobs handed
over and their results handed back, futures (federation's fetches) collected when done; and
the slow-frame check.

A connection whose request waits (`ServerConnection.waiting`) is not processed further until
what it waits for is done, so its later answers keep their order. A job is taken with
`ServerConnection.take_job` and its result handed back with `deliver`: the workers' sockets sit
in the loop's selector, so a result wakes the loop like a client does. A future's callback
wakes the loop through its wake-up socket (`Protocol.wake`); `_collect_fetched` then finds it.
`server_loop.ServerLoop` mixes this in; `server.Server` starts and stops the pool.
"""

from __future__ import annotations

import logging
import selectors
import socket
import time

from .config import ServerConfig
from .peer import Peer
from .worker_pool import PoolWorker, WorkerPool

log = logging.getLogger("mmtp.server")


class ServerJobs:
    # The loop's own state, used here.
    _conns: dict[socket.socket, Peer]
    _pending: set[Peer]
    _selector: selectors.BaseSelector | None
    _waiting: set[Peer]
    config: ServerConfig

    def _init_jobs(self) -> None:
        self._pool: WorkerPool | None = None
        # Jobs in the pool by ticket, and the ticket each waiting connection holds.
        self._jobs: dict[int, Peer] = {}
        self._tickets: dict[Peer, int] = {}

    def _job_timeout(self, timeout: float) -> float:
        """The loop's select timeout, shortened to the pool's next deadline."""
        deadline = self._pool.next_deadline() if self._pool is not None else None
        if deadline is None:
            return timeout
        return max(0.0, min(timeout, deadline - time.monotonic()))

    def _pool_event(self, worker: PoolWorker, mask: int) -> None:
        assert self._pool is not None
        self._pool.on_event(worker, mask)

    def _submit_job(self, conn: Peer) -> bool:
        """Hand the job `conn`'s request waits for (if any) to the pool; True if there was one."""
        job = conn.connection.take_job()
        if job is None:
            return False
        assert self._pool is not None
        ticket = self._pool.submit(job)
        self._jobs[ticket] = conn
        self._tickets[conn] = ticket
        return True

    def _cancel_job(self, conn: Peer) -> None:
        ticket = self._tickets.pop(conn, None)
        if ticket is not None:
            # Nobody waits for this job any more: it is dropped, or its result ignored.
            self._jobs.pop(ticket, None)
            if self._pool is not None:
                self._pool.cancel(ticket)

    def _pool_step(self) -> None:
        """Deadlines and replacements in the pool, then hand out the results."""
        if self._pool is not None:
            self._pool.expire()
            self._deliver()

    def _deliver(self) -> None:
        """Give finished jobs' results to their connections, which are then processed."""
        if self._pool is None:
            return
        for ticket, result in self._pool.take_results():
            conn = self._jobs.pop(ticket, None)
            if conn is None:
                continue
            self._tickets.pop(conn, None)
            if conn.sock in self._conns:
                conn.connection.deliver(result)
                self._pending.add(conn)

    def _wait_for_jobs(self, seconds: float) -> None:
        """While stopping: let the jobs under way finish (up to `seconds`) and deliver them."""
        if not self._jobs or self._pool is None or self._selector is None:
            return
        for key, mask in self._selector.select(seconds):
            if isinstance(key.data, PoolWorker):
                self._pool.on_event(key.data, mask)
        self._pool_step()

    def _collect_fetched(self) -> None:
        """Connections whose fetch is done (or that are gone) since the last turn go on."""
        if self._waiting:
            done = {c for c in self._waiting if not c.connection.waiting}
            self._waiting -= done
            self._pending |= {c for c in done if c.sock in self._conns}

    def _stalled(self, conn: Peer, now: float) -> bool:
        if conn.handshaking or conn.connection.closing:
            return False
        assert self._selector is not None
        try:
            reading = bool(self._selector.get_key(conn.sock).events & selectors.EVENT_READ)
        except (KeyError, ValueError):
            return False
        return conn.progress.stalled(
            now,
            unfinished=conn.connection.unfinished,
            received=conn.connection.received,
            reading=reading,
            grace=self.config.slow_frame_grace,
            min_rate=self.config.slow_frame_min_rate,
        )
