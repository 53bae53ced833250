"""Full garbage collections wait for a quiet moment (issue 10: a full collection in the
middle of typing was the p99 of keypress latency)."""

from __future__ import annotations

import gc

from mmtp_tui import idle_gc


class _Timers:
    def __init__(self) -> None:
        self.intervals: list[tuple[float, object, str | None]] = []

    def set_interval(self, interval: float, callback: object, *, name: str | None = None):
        self.intervals.append((interval, callback, name))


def test_install_freezes_startup_objects_and_makes_full_collections_rare():
    timers = _Timers()
    collector = idle_gc.install(timers)  # type: ignore[arg-type]
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[2] == idle_gc.LAZY_FULL_THRESHOLD
    assert timers.intervals == [(idle_gc.CHECK_EVERY, collector.check, "idle-gc")]
    idle_gc.install(timers)  # type: ignore[arg-type]  # a second app: one more timer only
    assert len(timers.intervals) == 2


def test_a_full_collection_runs_only_when_due_and_quiet():
    was_enabled = gc.isenabled()
    gc.disable()  # no automatic collection may move the counts during the test
    try:
        gc.collect()
        collector = idle_gc.IdleCollector()
        assert not collector.check()  # the first look: nothing to compare with
        assert not collector.check()  # quiet, but nothing reached the old generation
        gc.collect(1)  # younger collections ran: a full one is due
        assert not collector.check()  # not quiet: the counts just moved
        assert collector.check()  # a quiet second later: collected
        assert collector.collections == 1
        assert gc.get_count()[2] == 0
        assert not collector.check() and not collector.check()  # idle: nothing more to do
        assert collector.collections == 1
    finally:
        if was_enabled:
            gc.enable()
