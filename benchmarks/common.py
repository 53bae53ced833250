"""Shared pieces of the benchmark: results, timing helpers, the server subprocess.

Everything here talks to 127.0.0.1 only, and every subprocess it starts is stopped by the
context manager that started it (SIGTERM, then SIGKILL), whatever happens inside.
"""

from __future__ import annotations

import contextlib
import json
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent
REPO = HERE.parent


# --------------------------------------------------------------------------- results


@dataclass
class Target:
    name: str
    measured: str
    goal: str
    met: bool | None  # None: could not be measured


@dataclass
class Section:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def fmt_rate(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of unsorted values; 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def timed_loop(fn, *, count: int, seconds: float) -> tuple[int, float, list[float]]:
    """Call fn() up to `count` times or until `seconds` pass (at least once).

    Returns (calls, elapsed seconds, per-call seconds).
    """
    samples: list[float] = []
    started = time.perf_counter()
    for _ in range(max(1, count)):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
        if t0 + samples[-1] - started >= seconds:
            break
    return len(samples), time.perf_counter() - started, samples


# --------------------------------------------------------------------------- machine


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def raise_nofile(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {HOST}:{port} after {timeout:g} s: {tail(log)}")


def wait_for_ready_file(path: Path, proc: subprocess.Popen, timeout: float, log: Path) -> dict:
    """What `mmtp-server --ready-file` wrote once listening (renamed into place whole)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {tail(log)}")
        with contextlib.suppress(FileNotFoundError, ValueError):
            return json.loads(path.read_text(encoding="utf-8"))
        time.sleep(0.05)
    raise RuntimeError(f"the server wrote no ready file after {timeout:g} s: {tail(log)}")


def tail(path: Path, lines: int = 5) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def scratch_dir(name: str) -> Iterator[Path]:
    """A temporary directory on the machine's disk (not tmpfs-only paths), removed after."""
    path = Path(tempfile.mkdtemp(prefix=f"mmtp-bench-{name}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- our server


@dataclass
class ServerProc:
    proc: subprocess.Popen
    port: int
    tls_port: int | None
    data_dir: Path
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


@contextlib.contextmanager
def mmtp_server(
    name: str,
    *,
    difficulty: int,
    fsync: bool = True,
    tls: bool = False,
    allow_plain_auth: bool = False,
    extra: dict[str, object] | None = None,
) -> Iterator[ServerProc]:
    """`python -m mmtp_proto.server_cli` in a subprocess with its own data directory.

    The server binds free ports itself (port 0) and says which in its ready file, so it can
    log at WARNING: INFO logs a line per request, which would be part of what is measured.
    """
    with scratch_dir(name) as root:
        data_dir = root / "data"
        ready = root / "ready.json"
        options: dict[str, object] = {
            "fsync": fsync,
            "allow_plain_auth": allow_plain_auth,
            "max_connections": 4096,
            "max_connections_per_ip": 4096,
            "max_connections_per_network": 4096,
            # The benchmarks register their recipients from 127.0.0.1: more than the
            # default hourly limit for one address, which is not what they measure.
            "registrations_per_hour": 100_000,
            "tls": tls,
            "secure_port": 0,
        }
        options.update(extra or {})
        config = root / "server.toml"
        config.write_text("".join(f"{k} = {_toml_value(v)}\n" for k, v in options.items()))
        log = root / "server.log"
        command = [
            sys.executable,
            "-m",
            "mmtp_proto.server_cli",
            "--config",
            str(config),
            "--host",
            HOST,
            "--port",
            "0",
            "--ready-file",
            str(ready),
            "--data-dir",
            str(data_dir),
            "--difficulty",
            str(difficulty),
            "--domain",
            "example.com",
            "--log-level",
            "WARNING",
        ]
        with open(log, "wb") as log_file:
            proc = subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        try:
            where = wait_for_ready_file(ready, proc, 30.0, log)
            port = int(where["plain"][1])
            tls_port = int(where["tls"][1]) if where.get("tls") else None
            yield ServerProc(proc, port, tls_port, data_dir, log)
        finally:
            stop_process(proc)
