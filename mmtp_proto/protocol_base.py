"""What every action handler shares: configuration, store, rate limits, the checks of who a
connection is (SPEC §5), and handing OpenPGP work to a worker process (`_offload`). The
handlers live in `handlers/`, one module per area; `protocol.py` puts them together and
dispatches.

No untrusted OpenPGP data is parsed or verified here: that is `pgp_jobs`' work, run by the
server's `worker_pool` while the loop serves everyone else (keys fetched from other domains'
servers included, `handlers/relay.py`). A continuation runs when the job
is done and re-checks what may have changed meanwhile: the key registered for the address is
read again, and when it is no longer the one the job used, the job runs again against the
current one (at most twice; then the request is refused as busy).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from . import __version__, errors
from .address import domain_of
from .config import ServerConfig
from .deferred import BUSY, CRASHED, DEADLINE, Job, JobResult, Pending
from .errors import MMTPError
from .group_commit import GroupCommit, Withdrawable
from .pgp_jobs import key_tag
from .ratelimit import CpuBudget, FailureLimiter
from .registration import RegistrationLimiter
from .session import Outcome, Session
from .stamp import RecentStamps
from .store import KeyRecord, Store

log = logging.getLogger("mmtp.protocol")

# How many times a job runs again because the registered key changed while it ran.
_KEY_RESTARTS = 2


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
        window, block = config.failure_window_seconds, config.failure_block_seconds
        # Per source: failed REGISTER_KEYs and SENDs whose signature did not verify.
        self.failures = FailureLimiter(config.failure_limit, window, block)
        # AUTH failures per (source, address), and per source with a higher ceiling: one
        # user's failures do not lock out the neighbours behind the same NAT.
        self.auth_failures = FailureLimiter(config.failure_limit, window, block)
        self.auth_source_failures = FailureLimiter(config.auth_source_failure_limit, window, block)
        self.cpu = CpuBudget(config.source_cpu_seconds_per_minute)
        self.commits: GroupCommit[Withdrawable] = GroupCommit(store)
        self.registrations = RegistrationLimiter(config.registrations_per_hour, 3600.0)
        self.stamps_taken = RecentStamps()

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

    def _rate_check(self, session: Session, now: int) -> None:
        if self.failures.blocked(session.peer, now):
            raise MMTPError(
                errors.RATE_LIMITED,
                "too many failed attempts from your address; wait a few minutes and try again",
            )

    def _counting_failures(
        self, session: Session, now: int, step: Callable[[], Outcome | Pending]
    ) -> Outcome | Pending:
        """Run a handler step, counting its failures (and its continuation's) per source."""
        try:
            outcome = step()
        except MMTPError as exc:
            # NOT_LOCAL is not the key's fault, INTERNAL (busy) not the client's, and the
            # registration and CPU limits are limits, not failed attempts.
            if exc.code not in (errors.NOT_LOCAL, errors.INTERNAL, errors.RATE_LIMITED):
                self.failures.record_failure(session.peer, now)
            raise
        if isinstance(outcome, Pending):
            then = outcome.then
            outcome.then = lambda result: self._counting_failures(
                session, now, lambda: then(result)
            )
        return outcome

    def _cpu_check(self, session: Session, now: int) -> None:
        if self.cpu.exhausted(session.peer, now):
            raise MMTPError(
                errors.RATE_LIMITED,
                "your address has used its share of the server's key and signature checking "
                "for now; wait a minute and try again",
            )

    def _auth_rate_check(self, session: Session, email: str, now: int) -> None:
        # A source blocked for junk keys or bad signatures is not let try AUTHs either.
        self._rate_check(session, now)
        if self.auth_source_failures.blocked(session.peer, now) or self.auth_failures.blocked(
            (session.peer, email), now
        ):
            raise MMTPError(
                errors.RATE_LIMITED,
                f"too many failed attempts to authenticate as {email} from your address; "
                "wait a few minutes and try again",
            )

    def _record_auth_failure(self, session: Session, email: str, now: int) -> None:
        self.auth_failures.record_failure((session.peer, email), now)
        self.auth_source_failures.record_failure(session.peer, now)

    def prune_limits(self, now: float) -> None:
        for limiter in (self.failures, self.auth_failures, self.auth_source_failures, self.cpu):
            limiter.prune(now)

    # ------------------------------------------------------------------ work off the loop

    def _offload(
        self,
        session: Session,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        then: Callable[[JobResult], Outcome | Pending],
        *,
        affinity: str = "",
    ) -> Pending:
        """Answer later: `func(*args)` runs in a worker; `then(result)` back on the loop,
        once the job's worker time is charged to this connection's source."""
        peer = session.peer

        def charged(result: JobResult) -> Outcome | Pending:
            self.cpu.charge(peer, result.cpu_seconds, self.clock())
            return then(result)

        return Pending.on_job(Job(func, args, source=peer, affinity=affinity), charged)

    def _with_registered_key(
        self,
        session: Session,
        email: str,
        func: Callable[..., Any],
        args_for: Callable[[str | None], tuple[Any, ...]],
        then: Callable[[KeyRecord | None, JobResult], Outcome | Pending],
        *,
        restarts: int = _KEY_RESTARTS,
    ) -> Pending:
        """A job over the key registered for `email` (its text is in `args_for(text)`); `then`
        gets the key registered when the job ends, which is the one the job used."""
        record = self._active_key(email)
        armored = record.armored if record is not None else None

        def check(result: JobResult) -> Outcome | Pending:
            current = self._active_key(email)
            if (current.armored if current is not None else None) != armored:
                if restarts > 0:
                    return self._with_registered_key(
                        session, email, func, args_for, then, restarts=restarts - 1
                    )
                result = JobResult(failure=BUSY, detail="the key changed while it was checked")
            return then(current, result)

        affinity = key_tag(armored) if armored is not None else ""
        return self._offload(session, func, args_for(armored), check, affinity=affinity)

    def _job_failure(self, result: JobResult, code: str, what: str) -> MMTPError:
        """The error for a job that gave no value (`INTERNAL` when busy: not counted)."""
        if result.failure == DEADLINE:
            return MMTPError(
                code,
                f"{what} took too long (over {self.config.job_deadline_seconds:g} s) and was "
                "stopped; real keys and signatures take milliseconds",
            )
        if result.failure == CRASHED:
            return MMTPError(code, f"{what} failed: {result.detail or 'its worker died'}")
        if result.failure == BUSY:
            return MMTPError(
                errors.INTERNAL,
                f"the server is too busy for {what} right now ({result.detail or 'no free worker'})"
                "; try again in a minute",
            )
        log.error("a job failed: %s", result.detail)
        return MMTPError(code, f"{what} failed on data the server could not handle")
