"""Delivery (`delivery.Delivery`) in a process of its own, started and watched by the server.

The server's loop never delivers: it queues a job in the SEND's commit, then writes a byte to
a pipe (`kick`) so that the delivery process looks at the queue at once instead of at its
next poll. The child has its own store connection (SQLite or PostgreSQL), claims jobs with a
lease, delivers, and writes outcomes and reports itself; its threads never compete with the
loop for the GIL.

The pipe is also how the child knows the server is gone: when the server's end closes
(however the server ended, kill -9 included) the child reads EOF and stops. SIGTERM stops it
cleanly too. A child that dies is replaced (after a pause if it died young); the jobs it held
are claimed again when their leases end. Each server process (each worker of `--workers N`)
runs one; leases make several over one queue safe, on one host or many.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from .config import ServerConfig

log = logging.getLogger("mmtp.relay")

Routes = dict[str, tuple[str, int]]
# A child that dies sooner than this after its start is replaced only after RESTART_PAUSE.
QUICK_DEATH = 5.0
RESTART_PAUSE = 1.0
STOP_TIMEOUT = 5.0
EOF_GRACE = 2.0


class DeliveryProcess:
    """The server's side: start, kick, watch and stop the delivery child.

    `routes` gives the static routes the child starts with (tests add routes after the
    config was made, before the server runs)."""

    def __init__(self, config: ServerConfig, routes: Callable[[], Routes]) -> None:
        self.config = config
        self._routes = routes
        self._context = multiprocessing.get_context("forkserver")
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._process: Any = None
        self._kick_fd: int | None = None
        self._writer: Connection | None = None
        self._started_at = 0.0
        self._watcher: threading.Thread | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        process = self._process
        return None if process is None else process.pid

    @property
    def exitcode(self) -> int | None:
        process = self._process
        return None if process is None else process.exitcode

    def start(self) -> None:
        with self._lock:
            self._spawn()
        self._watcher = threading.Thread(
            target=self._watch, name="mmtp-delivery-watch", daemon=True
        )
        self._watcher.start()

    def _spawn(self) -> None:
        reader, writer = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=child_main,
            args=(self.config, self._routes(), reader),
            name="mmtp-delivery",
            daemon=True,
        )
        process.start()
        reader.close()
        os.set_blocking(writer.fileno(), False)
        self._process, self._writer, self._kick_fd = process, writer, writer.fileno()
        self._started_at = time.monotonic()
        log.info("relay: delivery process started (pid %d)", process.pid)

    def kick(self) -> None:
        """Jobs were queued and committed: deliver now. Never blocks (a full pipe means the
        child has kicks enough waiting; a dead one's pipe refuses it)."""
        # Under the lock: the watcher may close this descriptor, and its number be reused.
        with self._lock:
            if self._kick_fd is not None:
                with contextlib.suppress(OSError):
                    os.write(self._kick_fd, b"\0")

    def _watch(self) -> None:
        while not self._stopping.is_set():
            process = self._process
            # Waits on the sentinel without reaping: only this thread joins while it runs.
            if not wait([process.sentinel], 0.5) or self._stopping.is_set():
                continue
            process.join()
            log.error(
                "relay: the delivery process (pid %d) exited with status %s; starting another",
                process.pid,
                process.exitcode,
            )
            if time.monotonic() - self._started_at < QUICK_DEATH and self._stopping.wait(
                RESTART_PAUSE
            ):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self._close_pipe()
                self._spawn()
                self.restarts += 1

    def _close_pipe(self) -> None:
        self._kick_fd = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        with self._lock:
            self._stopping.set()
            process = self._process
            # EOF on the pipe tells the child to stop; SIGTERM if it does not soon.
            self._close_pipe()
        if self._watcher is not None:
            self._watcher.join(timeout)
        if process is None:
            return
        process.join(EOF_GRACE)
        if process.exitcode is None:
            with contextlib.suppress(OSError, ValueError):
                process.terminate()
            process.join(timeout)
        if process.exitcode is None:
            log.warning("relay: the delivery process did not stop; killing it")
            process.kill()
            process.join(timeout)


# ---------------------------------------------------------------------------- the child


def child_main(config: ServerConfig, routes: Routes, kicks: Connection) -> None:
    """The delivery process: deliver until SIGTERM or until the server's end of `kicks`
    closes."""
    # Ctrl-C reaches the whole process group; the server stops this process itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Handled from the start: a SIGTERM while this process still starts up stops it cleanly.
    stopping = threading.Event()
    delivery: Any = None

    def on_sigterm(_signum: int, _frame: Any) -> None:
        stopping.set()
        if delivery is not None:
            delivery.request_stop()

    signal.signal(signal.SIGTERM, on_sigterm)
    _setup_logging(config.log_level)
    from .delivery import Delivery
    from .federation import Federation

    federation = Federation(config, cert_path=None)
    federation.resolver.routes.update(routes)
    owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    reclaim_from_the_dead(_open_store(config), owner, int(time.time()))
    delivery = Delivery(config, federation, lambda: _open_store(config), owner=owner)
    if stopping.is_set():
        delivery.request_stop()
    threading.Thread(
        target=_read_kicks, args=(kicks, delivery), name="mmtp-kicks", daemon=True
    ).start()
    try:
        delivery.run()
    finally:
        federation.close()
    # `run` has given back every claim still out. A worker thread may still be blocked on a
    # remote that has not answered yet; waiting for it at exit (as the interpreter does for
    # executor threads) would let it carry on talking for a server that is gone: its
    # DOMAIN_AUTH would make the remote fetch our domain keys while we are down, and the
    # remote would not try again for a minute. The claims are back, so end here.
    logging.shutdown()
    os._exit(0)


def reclaim_from_the_dead(store: Any, owner: str, now: int) -> int:
    """Release the claims of delivery processes of this host that no longer run (a server
    and its delivery process both killed with -9), so their jobs go out now rather than when
    their lease ends; how many. Claims of other hosts are left to their leases: no pid of
    theirs can be checked from here. Closes `store`."""
    from .storage import StoreError

    host = owner.split(":", 1)[0]
    released = 0
    try:
        for other in store.lease_owners(now):
            parts = other.split(":")
            if len(parts) != 3 or parts[0] != host or other == owner or not parts[1].isdigit():
                continue
            if _pid_alive(int(parts[1])):
                continue
            count = store.release_owner(other)
            log.info("relay: took back %d job(s) claimed by %s, which is gone", count, other)
            released += count
        store.commit()
    except StoreError as exc:
        store.rollback()
        log.warning("relay: could not look for claims left by dead processes: %s", exc)
    finally:
        store.close()
    return released


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _open_store(config: ServerConfig) -> Any:
    """The store, with commits that do not wait for the disk: nothing written here carries a
    promise made to a client. A claim, outcome or report lost with the machine's power is
    redone: the job is claimed and sent again, and the remote's messageId dedupe answers
    "duplicate", which ends it as delivered. (SQLite: NORMAL, not OFF, so the checkpoints
    this connection runs still sync and the server's fsynced mail stays safe.)"""
    from .backends import open_store

    # PostgreSQL: as a store opened without fsync, so that a reconnect keeps it so.
    fsync = config.fsync and not config.database
    store: Any = open_store(config.database, Path(config.data_dir), fsync=fsync)
    if not config.database:
        store._db.execute("PRAGMA synchronous=NORMAL")
    return store


def _read_kicks(kicks: Connection, delivery: Any) -> None:
    fd = kicks.fileno()
    while True:
        try:
            data = os.read(fd, 4096)
        except InterruptedError:
            continue
        except OSError:
            data = b""
        if not data:
            # The server is gone (or stopping us): nobody will kick or take results.
            delivery.request_stop()
            return
        delivery.kick()


def _setup_logging(level: str) -> None:
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s %(levelname)s delivery: %(message)s", datefmt="%Y-%m-%d %H:%M:%S"
        )
    )
    root.addHandler(handler)
    root.setLevel(level.upper())
