"""AUTH (SPEC §5): prove, on this connection, the key registered for an address."""

from __future__ import annotations

import logging
from typing import Any

from .. import errors, pgp
from ..actions import AuthAnswer, AuthRequest
from ..canonical import auth_challenge
from ..errors import MMTPError
from ..protocol_base import ProtocolBase
from ..session import Outcome, Session

# The audit lines (who authenticated, key changes, deletions) share the protocol's logger.
log = logging.getLogger("mmtp.protocol")


class AuthHandler(ProtocolBase):
    def _auth(self, session: Session, data: dict[str, Any], now: int) -> Outcome:
        if not session.tls and not self.config.allow_plain_auth:
            raise MMTPError(
                errors.TLS_REQUIRED,
                "AUTH is refused over a plain connection; connect with TLS (port "
                f"{self.config.secure_port})",
            )
        self._rate_check(session, now)
        try:
            request = AuthRequest.from_data(data)
            email = request.email
            if self.store.account(email).disabled:
                raise MMTPError(
                    errors.FORBIDDEN,
                    f"the account {email} is disabled by this server's operator; ask them",
                )
            key = self._public_key(email)
            challenge = auth_challenge(self.server_name, session.nonce, email)
            if key is None or not pgp.verify_detached(challenge, request.signature, key):
                raise MMTPError(
                    errors.AUTH_FAILED,
                    f"authentication as {email} failed: sign this connection's challenge with "
                    "the private key registered for that address",
                )
        except MMTPError as exc:
            log.info("audit: %s AUTH failed (%s) %.80r", session.peer, exc.code, data.get("email"))
            self.failures.record_failure(session.peer, now)
            raise
        log.info("audit: %s authenticated as %s (%s)", session.peer, email, key.fingerprint)
        session.authenticated = email
        session.auth_fingerprint = key.fingerprint
        return Outcome(AuthAnswer(message="Authenticated", email=email).to_response())
