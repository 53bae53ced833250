"""Where a HashCash stamp is minted: in this process, or in spawned child processes.

:mod:`mmtp_proto.hashcash` holds the stamp format and the mint loop; this module only decides
where that loop runs. ``Minter(processes=0)`` runs it here (a script's thread). With
``processes=n`` it runs in ``n`` spawned children, each on its own counter range, so an
interactive program keeps its event loop: a CPU-bound thread slows a UI about five-fold, a
child process does not. Either way progress arrives as a try count, ``cancel()`` is polled,
and a true ``cancel()`` raises :class:`~mmtp_proto.hashcash.MintCancelled` with every child
terminated and reaped.

An interactive program mints with ``Minter.interactive()``: one core left free for its
event loop (``usable_cores() - 1`` children, at least one) and the children at a lower
priority (``niceness``) from their very start, interpreter start-up included, each in a
scheduling group of its own, so keys typed meanwhile go first on a busy machine; alone on a
core a stamp takes as long as before.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .hashcash import MintCancelled, _prepare, expected_tries, mint

# Worker i gets the counters from i * _SLICE on (7 days each at 1.6M/s).
_SLICE = 10**12
# Niceness of an interactive program's minting children: the kernel then gives a waiting
# UI about ten times the CPU share of a child (weights 1024 against 110).
INTERACTIVE_NICENESS = 10


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def lower_priority(pid: int, niceness: int) -> None:
    """Raise ``pid``'s niceness to at least ``niceness`` (0 = leave it; never raised back:
    an unprivileged process could not undo it). Best effort: where priorities cannot be set
    the stamp is minted all the same."""
    if niceness <= 0 or not hasattr(os, "setpriority"):
        return
    with contextlib.suppress(OSError):
        if os.getpriority(os.PRIO_PROCESS, pid) < niceness:
            os.setpriority(os.PRIO_PROCESS, pid, niceness)


def leave_the_parents_group(niceness: int) -> None:
    """Run in a scheduling group of our own, niced (Linux autogroups, one per session).

    Niceness only weighs tasks against each other within a group. In the parent's group a
    busy child keeps the group always runnable, so a key waking the interface no longer
    gets the wake-up preference over other sessions' processes: on a loaded machine every
    key then waits its group's turn. In a session of its own the child is charged to a group
    of its own, niced too. Best effort, for a child only (it also stops terminal signals
    meant for the parent's process group; the parent ends it)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setsid()
        with open("/proc/self/autogroup", "w", encoding="ascii") as fh:
            fh.write(str(niceness))


@dataclass(frozen=True)
class MintStatus:
    """Where a mint stands, for a progress display."""

    tries: int
    bits: int
    elapsed: float

    @property
    def expected(self) -> int:
        return expected_tries(self.bits)

    @property
    def rate(self) -> float:
        return self.tries / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left on average; None while the rate is unknown or once past the
        expected tries (a stamp has no deadline then: show elapsed and rate instead)."""
        rate = self.rate
        if rate <= 0 or self.tries >= self.expected:
            return None
        return (self.expected - self.tries) / rate


def _worker(
    conn: multiprocessing.connection.Connection,
    resource: str,
    bits: int,
    message_hash: str,
    now: int,
    rand: str,
    start: int,
    interval: float,
    niceness: int = 0,
) -> None:
    """One child: reports ("p", tries) now and then, then ("ok", stamp).

    It exits when the parent goes away (the next report hits a closed pipe).
    """
    if niceness > 0:
        leave_the_parents_group(niceness)
        lower_priority(0, niceness)  # the parent did so already where it could; make sure
    try:
        result = mint(
            resource,
            bits,
            message_hash,
            now=now,
            rand=rand,
            start=start,
            progress=lambda tries: conn.send(("p", tries)),
            progress_interval=interval,
        )
        conn.send(("ok", result))
    except (OSError, KeyboardInterrupt):  # parent gone, or Ctrl-C hit the process group
        pass
    except Exception as exc:
        with contextlib.suppress(OSError):
            conn.send(("err", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _usable_fileno(stream: Any) -> bool:
    try:
        return stream is not None and stream.fileno() >= 0
    except (AttributeError, OSError, ValueError):
        return False


def prepare() -> None:
    """Start multiprocessing's resource tracker now, with a real stderr.

    The tracker inherits stderr's file descriptor; UIs that capture stderr (Textual) give
    a stream without one, and a tracker started from such a thread could not report."""
    from multiprocessing import resource_tracker

    saved = sys.stderr
    try:
        if not _usable_fileno(saved) and _usable_fileno(sys.__stderr__):
            sys.stderr = sys.__stderr__
        resource_tracker.ensure_running()
    finally:
        sys.stderr = saved


@dataclass(frozen=True)
class Minter:
    """Mints stamps; ``processes`` 0 = in this process, n = in n child processes running at
    ``niceness`` (0 = the parent's priority). ``progress`` is called at most once every
    ``progress_interval`` seconds, however many children report."""

    processes: int = 0
    progress_interval: float = 0.1
    niceness: int = 0

    def __post_init__(self) -> None:
        count = self.processes
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError("processes must be a non-negative integer")
        nice = self.niceness
        if isinstance(nice, bool) or not isinstance(nice, int) or not 0 <= nice <= 19:
            raise ValueError("niceness must be an integer from 0 to 19")

    @classmethod
    def interactive(cls, *, progress_interval: float = 0.2) -> Minter:
        """For a program with a user interface: every core but one (at least one child),
        the children niced, so the interface keeps a core and wins any contention."""
        return cls(
            processes=max(1, usable_cores() - 1),
            progress_interval=progress_interval,
            niceness=INTERACTIVE_NICENESS,
        )

    def mint(
        self,
        resource: str,
        bits: int,
        message_hash: str,
        *,
        now: int | None = None,
        rand: str | None = None,
        progress: Callable[[int], None] | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> dict[str, Any]:
        """``{"token", "counter"}`` for ``resource`` and ``message_hash`` at ``bits``.

        ``progress`` gets the total tries so far (of all children); a true ``cancel()``
        raises :class:`MintCancelled`. ``ValueError`` for unusable arguments.
        """
        if self.processes == 0:
            return mint(
                resource,
                bits,
                message_hash,
                now=now,
                rand=rand,
                progress=progress,
                progress_interval=self.progress_interval,
                cancel=cancel,
            )
        now = int(time.time()) if now is None else now
        prefix = _prepare(resource, bits, message_hash, now, rand)
        rand = prefix.decode("ascii").split(":")[5]  # the same stamp layout for every child
        return self._in_children(resource, bits, message_hash, now, rand, progress, cancel)

    def _in_children(
        self,
        resource: str,
        bits: int,
        message_hash: str,
        now: int,
        rand: str,
        progress: Callable[[int], None] | None,
        cancel: Callable[[], bool] | None,
    ) -> dict[str, Any]:
        prepare()
        interval = self.progress_interval
        ctx = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        children: list[tuple[multiprocessing.process.BaseProcess, Any]] = []
        try:
            for i in range(self.processes):
                reader, writer = ctx.Pipe(duplex=False)
                child = ctx.Process(
                    target=_worker,
                    args=(writer, resource, bits, message_hash, now, rand, i * _SLICE),
                    kwargs={"interval": interval, "niceness": self.niceness},
                    name=f"mmtp-hashcash-{i}",
                    daemon=True,
                )
                try:
                    child.start()
                except BaseException:
                    reader.close()
                    raise
                finally:
                    writer.close()  # the child holds the only write end: EOF means it ended
                children.append((child, reader))
                if child.pid is not None:  # before the child's interpreter has started up
                    lower_priority(child.pid, self.niceness)
            tries = [0] * self.processes
            open_readers = {reader: i for i, (_, reader) in enumerate(children)}
            last = time.monotonic()
            while open_readers:
                ready = multiprocessing.connection.wait(list(open_readers), timeout=interval)
                for reader in ready:
                    i = open_readers[reader]
                    try:
                        kind, value = reader.recv()  # type: ignore[union-attr]
                    except EOFError:
                        del open_readers[reader]
                        continue
                    if kind == "p":
                        tries[i] = value
                    elif kind == "ok":
                        if progress is not None:
                            progress(sum(tries))
                        return value
                    else:
                        raise RuntimeError(f"a HashCash worker failed: {value}")
                # Cancel is checked before concluding anything from a child's exit, so a
                # cancel is always reported as a cancel.
                if cancel is not None and cancel():
                    raise MintCancelled(f"minting cancelled after {sum(tries)} tries")
                moment = time.monotonic()
                if moment - last >= interval:
                    last = moment
                    if progress is not None:
                        progress(sum(tries))
            raise RuntimeError("every HashCash worker exited without finding a stamp")
        finally:
            for child, _ in children:
                if child.is_alive():
                    child.terminate()
            for child, reader in children:
                child.join(timeout=5)
                if child.is_alive():  # pragma: no cover - SIGTERM ignored?
                    child.kill()
                    child.join()
                child.close()
                reader.close()
