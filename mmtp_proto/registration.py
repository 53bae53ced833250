"""Who may claim a name (SPEC §5): registration policy, reserved names, invite tokens and the
per-IP limit on new registrations. Pure: no store, no sockets; time is passed in.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import deque
from collections.abc import Iterable

from .address import parse_address

POLICIES = ("open", "invite", "closed")
# SPEC §5: never open for anyone to claim (RFC 2142 roles, and names that look official).
RESERVED_NAMES = frozenset(
    {
        "postmaster",
        "abuse",
        "hostmaster",
        "webmaster",
        "security",
        "root",
        "admin",
        "mailer-daemon",
        "noreply",
    }
)
# A deleted account's name waits this long before anyone may claim it (SPEC §5).
NAME_HOLD_SECONDS = 30 * 24 * 3600
# Decision: an invite not used within this time lapses.
INVITE_VALID_SECONDS = 30 * 24 * 3600


def base_name(email: str) -> str:
    """The part of an address's name before any `+`: `(postmaster+x)%(d)` → `postmaster`."""
    return parse_address(email).name.split("+", 1)[0]


def is_reserved(email: str, extra: Iterable[str] = ()) -> bool:
    name = base_name(email)
    return name in RESERVED_NAMES or name in {e.lower() for e in extra}


def new_invite_token() -> str:
    """A one-time token to hand to one person (URL-safe, 144 random bits)."""
    return secrets.token_urlsafe(18)


def invite_digest(token: str) -> str:
    # Only the digest is stored: someone who reads the database cannot use pending invites.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class RegistrationLimiter:
    """At most `limit` successful new registrations per source within `window` seconds."""

    def __init__(self, limit: int = 10, window: float = 3600.0) -> None:
        self.limit = limit
        self.window = window
        self._times: dict[str, deque[float]] = {}

    def allowed(self, source: str, now: float) -> bool:
        times = self._times.get(source)
        if times is None:
            return True
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._times[source]
            return True
        return len(times) < self.limit

    def record(self, source: str, now: float) -> None:
        if len(self._times) >= 10_000:
            self.prune(now)
        self._times.setdefault(source, deque()).append(now)

    def prune(self, now: float) -> None:
        for source in [s for s, t in self._times.items() if not t or t[-1] <= now - self.window]:
            del self._times[source]
