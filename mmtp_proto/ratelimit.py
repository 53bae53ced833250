"""Per-address failure limiting for AUTH and REGISTER_KEY (SPEC §7). Time is passed in."""

from __future__ import annotations

from collections import deque


class FailureLimiter:
    """Past `limit` failures within `window` seconds, an address is blocked for `block`."""

    def __init__(self, limit: int = 10, window: float = 60.0, block: float = 300.0) -> None:
        self.limit = limit
        self.window = window
        self.block = block
        self._failures: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}

    def blocked(self, key: str, now: float) -> bool:
        until = self._blocked_until.get(key)
        if until is None:
            return False
        if now >= until:
            del self._blocked_until[key]
            return False
        return True

    def record_failure(self, key: str, now: float) -> None:
        times = self._failures.setdefault(key, deque())
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) > self.limit:
            self._blocked_until[key] = now + self.block
            times.clear()

    def prune(self, now: float) -> None:
        """Forget quiet addresses so the tables stay bounded."""
        for key in [k for k, t in self._failures.items() if not t or t[-1] <= now - self.window]:
            del self._failures[key]
        for key in [k for k, until in self._blocked_until.items() if until <= now]:
            del self._blocked_until[key]
