"""The Minter's children yield the CPU to an interactive parent (issue 10): they run niced
from their start, an interactive Minter leaves a core free, and progress stays rate-limited."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import subprocess
import sys
import time

import pytest

from mmtp_proto.hashcash import MintCancelled
from mmtp_proto.minter import INTERACTIVE_NICENESS, Minter, lower_priority, usable_cores

BOB = "(bob)%(example.com)"
HASH = "0" * 64

needs_priorities = pytest.mark.skipif(
    not hasattr(os, "getpriority"), reason="no process priorities here"
)


def _minting_children() -> list[multiprocessing.process.BaseProcess]:
    return [c for c in multiprocessing.active_children() if c.name.startswith("mmtp-hashcash")]


@needs_priorities
def test_children_run_at_the_niceness_asked_for_while_minting():
    own = os.getpriority(os.PRIO_PROCESS, 0)
    wanted = min(19, own + 7)
    seen: list[int] = []

    def progress(tries: int) -> None:
        seen.extend(os.getpriority(os.PRIO_PROCESS, c.pid) for c in _minting_children())

    with pytest.raises(MintCancelled):
        Minter(processes=2, progress_interval=0.05, niceness=wanted).mint(
            BOB, 64, HASH, progress=progress, cancel=lambda: len(seen) >= 2
        )
    assert seen and all(n == wanted for n in seen)
    assert os.getpriority(os.PRIO_PROCESS, 0) == own  # the parent keeps its priority
    assert not _minting_children()


@needs_priorities
def test_lower_priority_only_ever_lowers():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        own = os.getpriority(os.PRIO_PROCESS, 0)
        lower_priority(child.pid, min(19, own + 5))
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == min(19, own + 5)
        lower_priority(child.pid, own)  # not raised back (nor could it be, unprivileged)
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == min(19, own + 5)
        lower_priority(child.pid, 0)  # 0 = leave it
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == min(19, own + 5)
    finally:
        child.kill()
        child.wait()


def test_interactive_minter_leaves_a_core_for_the_interface():
    minter = Minter.interactive()
    assert minter.processes == max(1, usable_cores() - 1)
    assert minter.niceness == INTERACTIVE_NICENESS > 0
    assert minter.progress_interval >= 0.1  # at most ten progress reports a second


@pytest.mark.parametrize("niceness", [-1, 20, True, 1.5])
def test_minter_refuses_an_unusable_niceness(niceness):
    with pytest.raises(ValueError):
        Minter(processes=1, niceness=niceness)


def test_progress_is_rate_limited_however_many_children_report():
    calls: list[float] = []
    started = time.monotonic()
    with pytest.raises(MintCancelled):
        Minter(processes=2, progress_interval=0.2).mint(
            BOB,
            64,
            HASH,
            progress=lambda tries: calls.append(time.monotonic()),
            cancel=lambda: time.monotonic() - started > 2.0,
        )
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert calls and all(gap >= 0.2 - 0.01 for gap in gaps)


@needs_priorities
@pytest.mark.parametrize("niceness", [0, 5])
def test_niced_children_leave_the_parents_scheduling_group(niceness):
    """A niced child runs in a session (so a Linux autogroup) of its own: its CPU is not
    charged to the interface's group. A child at niceness 0 stays where it was."""
    seen: list[bool] = []

    def progress(tries: int) -> None:
        if tries:  # the child is minting: past its set-up
            seen.extend(os.getsid(c.pid) == c.pid for c in _minting_children())

    wanted = max(niceness, os.getpriority(os.PRIO_PROCESS, 0)) if niceness else 0
    session = os.getsid(0)
    with pytest.raises(MintCancelled):
        Minter(processes=1, progress_interval=0.05, niceness=wanted).mint(
            BOB, 64, HASH, progress=progress, cancel=lambda: len(seen) >= 2
        )
    assert seen == [bool(niceness)] * len(seen)
    assert os.getsid(0) == session
