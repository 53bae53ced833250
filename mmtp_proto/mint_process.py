"""Minting a HashCash stamp in a child process, so a UI's event loop keeps the GIL.

A CPU-bound thread slows an interactive loop about five-fold; a child process does not.
`MintJob` starts one ("spawn" context: no fork of a threaded parent), shares the tries so far
through a shared integer, hands the stamp back through a pipe, and `cancel()` kills it.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import sys
import time
from typing import Any

from . import hashcash
from .errors import LocalError


def _child(
    conn: multiprocessing.connection.Connection,
    tries: Any,
    resource: str,
    bits: int,
    message_hash: str,
) -> None:
    def progress(count: int) -> None:
        tries.value = count

    try:
        stamp = hashcash.mint(
            resource, bits, message_hash, progress=progress, progress_interval=0.05
        )
        conn.send(("ok", stamp))
    except Exception as exc:  # reported to the parent in words
        conn.send(("error", str(exc)))
    finally:
        conn.close()


def _usable_fileno(stream: Any) -> bool:
    try:
        return stream is not None and stream.fileno() >= 0
    except (AttributeError, OSError, ValueError):
        return False


def prepare() -> None:
    """Start multiprocessing's resource tracker now. It inherits stderr's file descriptor;
    UIs that capture stderr (Textual) give a stream without one, so use the real stderr."""
    from multiprocessing import resource_tracker

    saved = sys.stderr
    try:
        if not _usable_fileno(saved) and _usable_fileno(sys.__stderr__):
            sys.stderr = sys.__stderr__
        resource_tracker.ensure_running()
    finally:
        sys.stderr = saved


class MintJob:
    """One stamp being minted in a child process."""

    def __init__(self, resource: str, bits: int, message_hash: str) -> None:
        self.resource, self.bits, self.message_hash = resource, bits, message_hash
        self.expected = hashcash.expected_tries(bits)
        context = multiprocessing.get_context("spawn")
        self._tries = context.Value("q", 0, lock=False)
        self._parent, child = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_child,
            args=(child, self._tries, resource, bits, message_hash),
            name="mmtp-mint",
            daemon=True,
        )
        self._child_end = child
        self.started = 0.0
        self.result: dict[str, Any] | None = None
        self.cancelled = False

    def start(self) -> MintJob:
        prepare()
        self.started = time.monotonic()
        self._process.start()
        self._child_end.close()
        return self

    @property
    def tries(self) -> int:
        return int(self._tries.value)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started if self.started else 0.0

    @property
    def rate(self) -> float:
        elapsed = self.elapsed
        return self.tries / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        """Seconds left on average, or None while the rate is unknown."""
        rate = self.rate
        if rate <= 0:
            return None
        return max(0.0, (self.expected - self.tries) / rate)

    def poll(self, timeout: float = 0.0) -> dict[str, Any] | None:
        """The stamp once found, else None; LocalError if the child failed."""
        if self.result is not None:
            return self.result
        if self.cancelled:
            raise LocalError("sending was cancelled")
        try:
            ready = self._parent.poll(timeout)
        except (OSError, EOFError):
            ready = True
        if not ready:
            exited = not self._process.is_alive() and self._process.exitcode is not None
            if exited and not self._parent.poll(0):
                raise LocalError("the HashCash process stopped unexpectedly")
            return None
        try:
            kind, value = self._parent.recv()
        except (EOFError, OSError):
            raise LocalError("the HashCash process stopped unexpectedly") from None
        self._process.join(5)
        if kind != "ok":
            raise LocalError(f"HashCash failed: {value}")
        self.result = value
        return value

    def cancel(self) -> None:
        self.cancelled = True
        if self._process.is_alive():
            self._process.kill()
        self._process.join(5)
        self._parent.close()

    def close(self) -> None:
        if self._process.is_alive():
            self.cancel()
        else:
            self._parent.close()
