"""CPU per process of a server tree during a benchmark phase (Linux /proc), and optional
py-spy profiles of each: `MMTP_BENCH_PROFILE=DIR` (bench_relay) turns it on.

A server's children (the delivery process, the OpenPGP workers) are told apart by what
py-spy sees them run, once, before the phase.

`Accounts` (bench_storage) splits the whole machine's busy time in a window by role: the
process trees it is given, and "other" for the rest of the machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PY_SPY = Path(sys.executable).parent / "py-spy"
TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _processes() -> dict[int, list[str]]:
    """The stat fields (after the name) of every process now."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            found[int(entry)] = fields
    return found


def _children(processes: dict[int, list[str]]) -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for pid, fields in processes.items():
        children.setdefault(int(fields[1]), []).append(pid)
    return children


def descendants(root: int, children: dict[int, list[int]] | None = None) -> list[int]:
    """`root` and every process under it."""
    return _walk(root, _children(_processes()) if children is None else children, set())


def _walk(root: int, children: dict[int, list[int]], stop: set[int]) -> list[int]:
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(c for c in children.get(pid, []) if c not in stop)
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


def machine_ticks() -> tuple[int, int]:
    """(busy, all) clock ticks of every CPU since boot, from /proc/stat: busy is all but idle
    and iowait. Guest time is left out, as it is already counted in user and nice."""
    first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    ticks = [int(x) for x in first[1:9]]  # user nice system idle iowait irq softirq steal
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


def cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


@dataclass
class Usage:
    """What `Accounts` measured over one window."""

    seconds: float  # wall time of the window
    capacity: float  # CPU seconds all the machine's CPUs had in it (busy or not)
    cpu: dict[str, float]  # CPU seconds by role, "other" included: they add up to busy

    def share(self, *roles: str) -> float:
        """The fraction of the machine's CPUs these roles used."""
        return sum(self.cpu.get(role, 0.0) for role in roles) / self.capacity

    @property
    def busy(self) -> float:
        return self.share(*self.cpu)


class Accounts:
    """The machine's busy CPU time in a window (`start` .. `stop`), split by role.

    `roots` maps a process to a function naming the role of each process of its tree (the
    root's included); a tree stops at another root. A process's CPU is counted with the CPU
    of the children it has reaped (cutime, cstime): one that exits within the window (a load
    client, a PostgreSQL backend) still counts, through its parent, as long as the parent is
    in the same role. "other" is the machine's busy time that no tree used.
    """

    def __init__(self, roots: dict[int, Callable[[int], str]]) -> None:
        self.roots = roots
        self._start: tuple[float, int, int, dict[str, int]] | None = None
        self.usage: Usage | None = None

    def _snapshot(self) -> tuple[float, int, int, dict[str, int]]:
        busy, total = machine_ticks()
        processes = _processes()
        children = _children(processes)
        used: dict[str, int] = {}
        for root, name in self.roots.items():
            for pid in _walk(root, children, set(self.roots) - {root}):
                if (fields := processes.get(pid)) is None:
                    continue
                role = name(pid)
                used[role] = used.get(role, 0) + sum(int(x) for x in fields[11:15])
        return time.monotonic(), busy, total, used

    def start(self) -> None:
        self._start = self._snapshot()

    def stop(self) -> None:
        if self._start is None:
            return
        t0, busy0, total0, used0 = self._start
        t1, busy1, total1, used1 = self._snapshot()
        self._start = None
        cpu = {role: (used1.get(role, 0) - used0.get(role, 0)) / TICK for role in used1}
        cpu["other"] = (busy1 - busy0) / TICK - sum(cpu.values())
        self.usage = Usage(t1 - t0, max(1, total1 - total0) / TICK, cpu)
