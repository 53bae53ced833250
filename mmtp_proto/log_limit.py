"""A logging filter that bounds repeated log lines (SPEC §11: a flood of bad requests cannot
flood the disk).

Lines are grouped by kind: logger, level and message template (`record.msg` before its
arguments are filled in), so "1.2.3.4 - ERROR BAD_JSON" and "5.6.7.8 - ERROR BAD_REQUEST"
are one kind. Each kind may write `lines` lines per `seconds`; the rest of that interval are
counted, and once it is over one line says how many were left out. Without it, one 3-byte
junk request wrote one ~55-byte line: an 18-fold amplification, 70,000 lines a second.

Install on a handler: `RepeatLimiter.install(handler, lines, seconds)`. Summaries of finished
intervals go out with the next line that passes the handler, or at `flush_due()`, which the
server loop calls once a second so the last summary of a flood is not held back.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable

# Kinds remembered at once; past it new kinds share one budget, so messages built with
# their data inside the template (an f-string) cannot grow the table without bound.
MAX_KINDS = 512
_OVERFLOW = ("*", 0, "(messages of other kinds)")
_SUMMARY_FLAG = "_mmtp_summary"

_installed: weakref.WeakSet[RepeatLimiter] = weakref.WeakSet()


class _Window:
    __slots__ = ("level", "logger", "passed", "start", "suppressed", "template")

    def __init__(self, start: float, record: logging.LogRecord, template: str) -> None:
        self.start = start
        self.passed = 0
        self.suppressed = 0
        self.logger = record.name
        self.level = record.levelno
        self.template = template


class RepeatLimiter(logging.Filter):
    """Let `lines` lines of each kind through per `seconds`; sum up the rest."""

    def __init__(
        self,
        lines: int,
        seconds: float,
        emit: Callable[[logging.LogRecord], object],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.lines = lines
        self.seconds = seconds
        self._emit = emit
        self._clock = clock
        self._windows: dict[tuple[str, int, str], _Window] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    @classmethod
    def install(cls, handler: logging.Handler, lines: int, seconds: float) -> RepeatLimiter:
        limiter = cls(lines, seconds, handler.handle)
        handler.addFilter(limiter)
        _installed.add(limiter)
        return limiter

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _SUMMARY_FLAG, False) or self.lines <= 0:
            return True
        now = self._clock()
        template = str(record.msg)
        key = (record.name, record.levelno, template)
        with self._lock:
            due = self._sweep(now)
            window = self._windows.get(key)
            if window is None:
                if len(self._windows) - (_OVERFLOW in self._windows) >= MAX_KINDS:
                    key = _OVERFLOW
                    window = self._windows.get(key)
                if window is None:
                    window = self._windows[key] = _Window(now, record, key[2])
            if window.passed < self.lines:
                window.passed += 1
                allowed = True
            else:
                window.suppressed += 1
                allowed = False
        self._send(due)
        return allowed

    def flush(self) -> None:
        """Write the summaries of intervals that are over (called about once a second)."""
        with self._lock:
            due = self._sweep(self._clock())
        self._send(due)

    def _sweep(self, now: float) -> list[logging.LogRecord]:
        """Close the windows whose interval is over; return their summaries. Under the lock."""
        if now < self._next_sweep:
            return []
        self._next_sweep = now + min(1.0, self.seconds)
        summaries: list[logging.LogRecord] = []
        for key, window in list(self._windows.items()):
            if now - window.start < self.seconds:
                continue
            del self._windows[key]
            if window.suppressed:
                summaries.append(self._summary(window, now))
        return summaries

    def _summary(self, window: _Window, now: float) -> logging.LogRecord:
        record = logging.makeLogRecord(
            {
                "name": window.logger,
                "levelno": window.level,
                "levelname": logging.getLevelName(window.level),
                "msg": "%d similar lines suppressed in %.0f s: %r",
                "args": (window.suppressed, now - window.start, window.template),
            }
        )
        setattr(record, _SUMMARY_FLAG, True)
        return record

    def _send(self, summaries: list[logging.LogRecord]) -> None:
        for record in summaries:
            self._emit(record)


def flush_due() -> None:
    """Write the pending summaries of every installed limiter whose interval is over."""
    for limiter in list(_installed):
        limiter.flush()
