"""CPU per process of a server tree during a benchmark phase (Linux /proc), and optional
py-spy profiles of each: `MMTP_BENCH_PROFILE=DIR` (bench_relay) turns it on.

A server's children (the delivery process, the OpenPGP workers) are told apart by what
py-spy sees them run, once, before the phase.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

PY_SPY = Path(sys.executable).parent / "py-spy"
TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(pid: int) -> float:
    fields = _stat(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / TICK


def role(pid: int, server: int) -> str:
    if pid == server:
        return "loop"
    try:
        dump = subprocess.run(
            [str(PY_SPY), "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=20
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "children"  # py-spy missing: workers and the delivery child, together
    if "child_main" in dump:
        return "delivery"
    if "worker_process" in dump:
        return "pgp worker"
    if "forkserver" in dump:
        return "forkserver"
    return "other"


class Tree:
    """The processes of named server trees, their CPU counted from `start` to `stop`."""

    def __init__(self, servers: dict[str, int], profile_dir: Path | None) -> None:
        self.roles: dict[int, str] = {}
        for name, pid in servers.items():
            for child in descendants(pid):
                self.roles[child] = f"{name} {role(child, pid)}"
        self.profile_dir = profile_dir
        # MMTP_BENCH_PROFILE_IDLE=1: wall time (waits included, per thread), not CPU.
        self.spy_args = ["--idle", "--threads"] if os.environ.get("MMTP_BENCH_PROFILE_IDLE") else []
        self._spies: list[subprocess.Popen[bytes]] = []
        self._start: dict[int, float] = {}
        self.used: dict[str, float] = {}

    def summary(self, clients: float) -> str:
        parts = [f"{name} {secs:.1f}" for name, secs in sorted(self.used.items())]
        return ", ".join([*parts, f"load clients {clients:.1f}"])

    def start(self, profile: bool = True) -> None:
        self._start = {pid: cpu_seconds(pid) for pid in self.roles}
        self._spies = []
        if self.profile_dir is None or not profile:
            return
        for pid, name in self.roles.items():
            if name.endswith(("forkserver", "children", "other")):
                continue
            out = self.profile_dir / f"{name.replace(' ', '-')}-{pid}.txt"
            self._spies.append(
                subprocess.Popen(
                    [
                        str(PY_SPY),
                        "record",
                        "--pid",
                        str(pid),
                        "--rate",
                        "50",
                        "--format",
                        "raw",
                        "--nonblocking",
                        "--output",
                        str(out),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def stop(self) -> None:
        used: dict[str, float] = {}
        for pid, name in self.roles.items():
            used[name] = used.get(name, 0.0) + cpu_seconds(pid) - self._start.get(pid, 0.0)
        # Roles that used nothing (the forkservers, an idle delivery process) are left out.
        self.used = {name: secs for name, secs in used.items() if secs >= 0.05}
        for spy in self._spies:
            spy.send_signal(signal.SIGINT)
        for spy in self._spies:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
