"""AUTH (SPEC §5): prove, on this connection, the key registered for an address.

The signature is checked by a worker process (`pgp_jobs.verify`), never on the loop thread.
Failures count per (source, address), and per source against a higher ceiling.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import errors, pgp_jobs
from ..actions import AuthAnswer, AuthRequest
from ..canonical import auth_challenge
from ..deferred import JobResult, Pending
from ..errors import MMTPError
from ..protocol_base import ProtocolBase
from ..session import Outcome, Session
from ..store import KeyRecord

# The audit lines (who authenticated, key changes, deletions) share the protocol's logger.
log = logging.getLogger("mmtp.protocol")


class AuthHandler(ProtocolBase):
    def _auth(self, session: Session, data: dict[str, Any], now: int) -> Outcome | Pending:
        if not session.tls and not self.config.allow_plain_auth:
            raise MMTPError(
                errors.TLS_REQUIRED,
                "AUTH is refused over a plain connection; connect with TLS (port "
                f"{self.config.secure_port})",
            )
        try:
            request = AuthRequest.from_data(data)
        except MMTPError as exc:
            self._auth_rate_check(session, "", now)
            self._auth_failure(session, "", exc, now)
            raise
        email = request.email
        self._auth_rate_check(session, email, now)
        if self.store.account(email).disabled:
            error = MMTPError(
                errors.FORBIDDEN,
                f"the account {email} is disabled by this server's operator; ask them",
            )
            raise self._auth_failure(session, email, error, now)
        if self._active_key(email) is None:
            raise self._auth_failure(session, email, self._auth_failed(email), now)
        self._cpu_check(session, now)
        challenge = auth_challenge(self.server_name, session.nonce, email)
        return self._with_registered_key(
            session,
            email,
            pgp_jobs.verify,
            lambda armored: (challenge, request.signature, armored),
            lambda record, result: self._auth_checked(session, email, record, result, now),
        )

    def _auth_checked(
        self, session: Session, email: str, record: KeyRecord | None, result: JobResult, now: int
    ) -> Outcome:
        if not result.ok:
            error = self._job_failure(result, errors.AUTH_FAILED, "checking your signature")
            if error.code == errors.INTERNAL:
                raise error
            raise self._auth_failure(session, email, error, now)
        if record is None or not result.value:
            raise self._auth_failure(session, email, self._auth_failed(email), now)
        log.info("audit: %s authenticated as %s (%s)", session.peer, email, record.fingerprint)
        session.authenticated = email
        session.auth_fingerprint = record.fingerprint
        return Outcome(AuthAnswer(message="Authenticated", email=email).to_response())

    def _auth_failure(self, session: Session, email: str, exc: MMTPError, now: int) -> MMTPError:
        """Count a failed AUTH (per source and address) and write its audit line."""
        log.info("audit: %s AUTH failed (%s) %.80r", session.peer, exc.code, email)
        self._record_auth_failure(session, email, now)
        return exc

    @staticmethod
    def _auth_failed(email: str) -> MMTPError:
        return MMTPError(
            errors.AUTH_FAILED,
            f"authentication as {email} failed: sign this connection's challenge with "
            "the private key registered for that address",
        )
