"""The worker processes of `worker_pool`: the code they run (one job at a time, saying how it
went), and the pool's record of each worker and each job.

Messages both ways are a 4-byte big-endian length and a pickle. A job is (function, args); a
reply is (failure or None, value, detail, CPU seconds). The first reply, before any job, says
the worker is ready.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import resource
import signal
import socket
import struct
import time
from collections import OrderedDict, deque
from typing import Any

from .deferred import CRASHED, ERROR, Job

HEADER = struct.Struct(">I")
# Results and jobs are our own values; a length beyond this means a broken stream.
MAX_MESSAGE = 256 * 1024 * 1024


def recv_exact(sock: socket.socket, size: int) -> bytes | None:
    parts = bytearray()
    while len(parts) < size:
        chunk = sock.recv(size - len(parts))
        if not chunk:
            return None
        parts += chunk
    return bytes(parts)


def serve(sock: socket.socket, memory_limit: int) -> None:
    """A worker's life: read a job, run it, write the result; exit at EOF."""
    # The pool closing its end (the server stopping) is a normal end, not an error to print.
    with contextlib.suppress(OSError):
        _run_jobs(sock, memory_limit)


def _run_jobs(sock: socket.socket, memory_limit: int) -> None:
    # Ctrl-C and the terminal's signals are for the server, which stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if memory_limit > 0:
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = memory_limit if hard == resource.RLIM_INFINITY else min(memory_limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    sock.setblocking(True)
    # Ready: the pool sends no job before this, so a slow start never eats a job's deadline.
    ready = pickle.dumps((None, None, "ready", 0.0))
    sock.sendall(HEADER.pack(len(ready)) + ready)
    while True:
        header = recv_exact(sock, HEADER.size)
        if header is None:
            return
        body = recv_exact(sock, HEADER.unpack(header)[0])
        if body is None:
            return
        func, args = pickle.loads(body)
        started = time.process_time()
        fatal = False
        try:
            reply: tuple[str | None, Any, str] = (None, func(*args), "")
        except MemoryError:
            reply, fatal = (CRASHED, None, "it needed more memory than a worker may use"), True
        except Exception as exc:
            reply = (ERROR, None, f"{type(exc).__name__}: {exc}"[:500])
        data = pickle.dumps((*reply, time.process_time() - started))
        sock.sendall(HEADER.pack(len(data)) + data)
        if fatal:
            # Whatever ran out of memory may have left the process in a poor state.
            os._exit(1)


class Task:
    """A job the pool was given, and where it stands."""

    __slots__ = ("cancelled", "job", "queued_at", "quick", "started_at", "ticket")

    def __init__(self, ticket: int, job: Job, now: float) -> None:
        self.ticket = ticket
        self.job = job
        self.queued_at = now
        self.started_at = 0.0  # when it began to run (its deadline counts from there)
        self.cancelled = False
        self.quick = False  # its source's last job was quick: it may wait in a pipeline


class PoolWorker:
    """One worker process and the pool's end of its socket (the selector's tag for it)."""

    __slots__ = ("inbuf", "outbuf", "process", "ready", "sock", "tags", "tasks")

    def __init__(self, process: Any, sock: socket.socket) -> None:
        self.process = process
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        # Jobs sent to it, in order; the first is running.
        self.tasks: deque[Task] = deque()
        self.ready = False  # it said so: it has started and takes jobs
        # Affinities of recent jobs: the keys this worker likely has parsed already.
        self.tags: OrderedDict[str, None] = OrderedDict()

    @property
    def pid(self) -> int | None:
        return self.process.pid  # type: ignore[no-any-return]
