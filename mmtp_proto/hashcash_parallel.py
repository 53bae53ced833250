"""HashCash minting on several cores: :func:`mint` in spawned child processes (SPEC §4).

Kept apart from :mod:`mmtp_proto.hashcash` so the stamp logic there stays free of process
management.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import time
from collections.abc import Callable
from typing import Any

from .hashcash import MintCancelled, _prepare, mint

# mint_parallel gives worker i the counters from i * _SLICE on (7 days each at 1.6M/s).
_SLICE = 10**12


def _worker(
    conn: multiprocessing.connection.Connection,
    resource: str,
    bits: int,
    message_hash: str,
    now: int,
    rand: str,
    start: int,
    interval: float,
) -> None:
    """One mint_parallel child: reports ("p", tries) now and then, then ("ok", stamp).

    It exits when the parent goes away (the next report hits a closed pipe).
    """
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


def mint_parallel(
    resource: str,
    bits: int,
    message_hash: str,
    *,
    processes: int | None = None,
    now: int | None = None,
    rand: str | None = None,
    progress: Callable[[int], None] | None = None,
    progress_interval: float = 0.1,
    cancel: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """:func:`mint` on ``processes`` cores (default: all), each on its own counter range.

    Children are started with the "spawn" method (safe in a threaded program such as the
    TUI), report progress through a pipe, and are terminated and reaped as soon as one finds
    a stamp, on cancel, or on any error. ``progress`` gets the total tries of all children.
    With one process this is just :func:`mint` in this process.
    """
    count = (os.cpu_count() or 1) if processes is None else processes
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError("processes must be a positive integer")
    now = int(time.time()) if now is None else now
    prefix = _prepare(resource, bits, message_hash, now, rand)
    rand = prefix.decode("ascii").split(":")[5]  # the same stamp layout for every child
    if count == 1:
        return mint(
            resource,
            bits,
            message_hash,
            now=now,
            rand=rand,
            progress=progress,
            progress_interval=progress_interval,
            cancel=cancel,
        )

    ctx = multiprocessing.get_context("spawn")
    children: list[tuple[multiprocessing.process.BaseProcess, Any]] = []
    try:
        for i in range(count):
            reader, writer = ctx.Pipe(duplex=False)
            child = ctx.Process(
                target=_worker,
                args=(writer, resource, bits, message_hash, now, rand, i * _SLICE),
                kwargs={"interval": progress_interval},
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
        tries = [0] * count
        open_readers = {reader: i for i, (_, reader) in enumerate(children)}
        last = time.monotonic()
        while open_readers:
            ready = multiprocessing.connection.wait(list(open_readers), timeout=progress_interval)
            for reader in ready:
                i = open_readers[reader]
                try:
                    kind, value = reader.recv()
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
            moment = time.monotonic()
            if moment - last >= progress_interval:
                last = moment
                if progress is not None:
                    progress(sum(tries))
                if cancel is not None and cancel():
                    raise MintCancelled(f"minting cancelled after {sum(tries)} tries")
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
