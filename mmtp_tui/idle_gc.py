"""Full garbage collections while the user is idle, not in the middle of typing.

A full (generation 2) collection walks every tracked object; in this app that is 50 to 150
thousand objects, 30 to 130 ms of CPU on a loaded 2-core machine, and a key that arrives
meanwhile waits for it. In ``benchmarks/bench_tui.py`` those pauses were the p99 of keypress
latency, idle or minting alike. So, once per process:

- what exists when the app has started (Textual, PGPy, every module) is frozen out of all
  later collections (``gc.freeze``): it lives as long as the process anyway;
- automatic full collections are made rare (after 100 younger collections instead of 10);

and each app checks once a second: when full collections are due (younger collections ran
since the last one) and the last second was quiet (no collection at all: little allocation,
so no typing or repainting), it runs the full collection itself. Idle, the check does
nothing, and costs microseconds a second.
"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from textual.app import App

CHECK_EVERY = 1.0  # s
LAZY_FULL_THRESHOLD = 100  # younger collections before CPython collects everything itself

_installed = False  # the freeze and the thresholds are per process; tests make many apps


def install(app: App) -> IdleCollector:
    """Set up the process once (freeze, thresholds) and check ``app`` every second."""
    global _installed
    if not _installed:
        _installed = True
        gc.collect()  # garbage first: what is frozen is never collected
        gc.freeze()
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, LAZY_FULL_THRESHOLD)
    collector = IdleCollector()
    app.set_interval(CHECK_EVERY, collector.check, name="idle-gc")
    return collector


class IdleCollector:
    """Runs the full collection when it is due and the process has been quiet."""

    def __init__(self) -> None:
        self._last: tuple[int, int] | None = None
        self.collections = 0

    def check(self) -> bool:
        """One tick: True when it collected."""
        _, young, middle = gc.get_count()
        seen = (young, middle)
        quiet = seen == self._last
        self._last = seen
        if not (quiet and middle > 0):
            return False
        gc.collect()
        self.collections += 1
        self._last = None
        return True
