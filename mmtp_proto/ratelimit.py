"""Limits on what failures and worker CPU one source may cost (SPEC §7). Time is passed in.

`FailureLimiter` counts failures per key: a source IP for REGISTER_KEY and failed signature
checks on SEND, (source IP, address) and, with a higher ceiling, source IP for AUTH.
`CpuBudget` meters the worker seconds each source's OpenPGP jobs cost, failed or not.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable


class FailureLimiter:
    """Past `limit` failures within `window` seconds, a key is blocked for `block`."""

    def __init__(self, limit: int = 10, window: float = 60.0, block: float = 300.0) -> None:
        self.limit = limit
        self.window = window
        self.block = block
        self._failures: dict[Hashable, deque[float]] = {}
        self._blocked_until: dict[Hashable, float] = {}

    def blocked(self, key: Hashable, now: float) -> bool:
        until = self._blocked_until.get(key)
        if until is None:
            return False
        if now >= until:
            del self._blocked_until[key]
            return False
        return True

    def record_failure(self, key: Hashable, now: float) -> None:
        times = self._failures.setdefault(key, deque())
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) > self.limit:
            self._blocked_until[key] = now + self.block
            times.clear()

    def prune(self, now: float) -> None:
        """Forget quiet keys so the tables stay bounded."""
        for key in [k for k, t in self._failures.items() if not t or t[-1] <= now - self.window]:
            del self._failures[key]
        for key in [k for k, until in self._blocked_until.items() if until <= now]:
            del self._blocked_until[key]


class CpuBudget:
    """Each source may spend `per_minute` worker seconds a minute, in a burst or spread out.

    A leaky bucket: a source's spending drains at `per_minute / 60` seconds per second, and
    while it is at `per_minute` or above no new job of that source starts. A job's cost is
    known only when it ends, so one job may take a source past the line once.
    """

    def __init__(self, per_minute: float = 60.0) -> None:
        self.per_minute = per_minute
        self._spent: dict[Hashable, tuple[float, float]] = {}  # key -> (level, when)

    def _level(self, key: Hashable, now: float) -> float:
        level, when = self._spent.get(key, (0.0, now))
        return max(0.0, level - (now - when) * self.per_minute / 60.0)

    def exhausted(self, key: Hashable, now: float) -> bool:
        return self._level(key, now) >= self.per_minute

    def charge(self, key: Hashable, seconds: float, now: float) -> None:
        if seconds > 0:
            self._spent[key] = (self._level(key, now) + seconds, now)

    def prune(self, now: float) -> None:
        for key in [k for k in self._spent if self._level(k, now) == 0.0]:
            del self._spent[key]
