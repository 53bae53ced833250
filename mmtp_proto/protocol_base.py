"""What every action handler shares: configuration, store, key cache and the checks of who a
connection is (SPEC §5). The handlers live in `handlers/`, one module per area; `protocol.py`
puts them together and dispatches.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from . import __version__, errors, pgp
from .address import domain_of
from .config import ServerConfig
from .errors import MMTPError
from .group_commit import GroupCommit, Withdrawable
from .ratelimit import FailureLimiter
from .registration import RegistrationLimiter
from .session import Session
from .store import KeyRecord, Store

_KEY_CACHE_SIZE = 1024


class ProtocolBase:
    def __init__(
        self,
        config: ServerConfig,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.server_name = f"{config.server_name}/{__version__}"
        self.domains = frozenset(config.domains)
        self.failures = FailureLimiter(
            config.failure_limit, config.failure_window_seconds, config.failure_block_seconds
        )
        self.commits: GroupCommit[Withdrawable] = GroupCommit(store)
        self._keys: OrderedDict[tuple[str, str], pgp.PublicKey] = OrderedDict()
        self.registrations = RegistrationLimiter(config.registrations_per_hour, 3600.0)

    def _require_local(self, email: str) -> None:
        if domain_of(email) not in self.domains:
            raise MMTPError(
                errors.NOT_LOCAL,
                f"{email} is not on a domain this server serves "
                f"({', '.join(sorted(self.domains))}); this server does not relay",
            )

    def _current_identity(self, session: Session) -> str | None:
        """Who this connection is authenticated as, if that key is still the registered one."""
        email = session.authenticated
        if email is None:
            return None
        record = self._active_key(email)
        if record is None or record.fingerprint != session.auth_fingerprint:
            session.authenticated = session.auth_fingerprint = None
            return None
        return email

    def _active_key(self, email: str) -> KeyRecord | None:
        """The key registered for `email`, unless the operator disabled the account: then it
        is not served, not sent to, and proves nothing (mmtp-admin accounts disable)."""
        record = self.store.get_key(email)
        if record is None or self.store.account(email).disabled:
            return None
        return record

    def _require_auth_as(self, session: Session, email: str) -> None:
        if self._current_identity(session) is None:
            raise MMTPError(errors.AUTH_REQUIRED, f"authenticate as {email} first (AUTH)")
        if session.authenticated != email:
            raise MMTPError(
                errors.FORBIDDEN,
                f"this connection is authenticated as {session.authenticated}, not {email}",
            )

    def _public_key(self, email: str) -> pgp.PublicKey | None:
        record = self._active_key(email)
        if record is None:
            return None
        # Keyed by the material, not the fingerprint: an updated key keeps its fingerprint.
        cache_key = (email, record.armored)
        key = self._keys.get(cache_key)
        if key is None:
            key = pgp.PublicKey.from_armored(record.armored)
            self._keys[cache_key] = key
            if len(self._keys) > _KEY_CACHE_SIZE:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(cache_key)
        return key

    def _rate_check(self, session: Session, now: int) -> None:
        if self.failures.blocked(session.peer, now):
            raise MMTPError(
                errors.RATE_LIMITED,
                "too many failed attempts from your address; wait a few minutes and try again",
            )
