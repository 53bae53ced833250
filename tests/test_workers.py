"""`mmtp-server --workers 2` over one database (PostgreSQL, or the one SQLite file): one port,
two processes, every acknowledged message stored once; a worker killed under load is replaced
and loses nothing acknowledged; SIGTERM stops them all."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from load_tools import SendLoad, ServerProcess, receive_all, register

pytestmark = pytest.mark.both_backends


def children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


@pytest.fixture
def supervised(tmp_path: Path, database: str | None) -> Iterator[ServerProcess]:
    args = ["--workers", "2"] + (["--database", database] if database else [])
    server = ServerProcess(tmp_path / "data", tmp_path / "logs", args)
    yield server.start()
    if server.proc is not None and server.proc.poll() is None:
        for pid in children(server.pid):
            os.kill(pid, signal.SIGKILL)
        server.kill()


@pytest.mark.slow
def test_two_workers_under_load_store_every_acknowledged_message_once(
    supervised: ServerProcess,
) -> None:
    workers = children(supervised.pid)
    assert len(workers) == 2
    register(supervised.plain)
    with SendLoad(supervised.plain, 8, seed=3) as load:
        time.sleep(1.5)
        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        time.sleep(1.5)
    assert load.acked
    stored = Counter(m["meta"]["messageId"] for m in receive_all(supervised.tls))
    missing = [m for m in load.acked if stored[m] != 1]
    assert not missing, f"{len(missing)} of {len(load.acked)} acknowledged messages lost"
    assert all(count == 1 for count in stored.values())
    # The killed worker was replaced.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = children(supervised.pid)
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the killed worker was not replaced: {children(supervised.pid)}")
    # Every connection lands on a worker that answers (the replacement listens too).
    for _ in range(8):
        register(supervised.plain)


def test_sigterm_stops_every_worker(supervised: ServerProcess) -> None:
    workers = children(supervised.pid)
    assert len(workers) == 2
    register(supervised.plain)
    assert supervised.terminate() == 0
    assert not any(alive(pid) for pid in workers)
