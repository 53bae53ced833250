"""REGISTER_KEY and REQUEST_PUBLIC_KEY (SPEC §5): the key directory."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from .. import errors, openpgp_packets, pgp
from ..actions import (
    RegisterKeyAnswer,
    RegisterKeyRequest,
    RequestPublicKeyAnswer,
    RequestPublicKeyRequest,
    email_of,
)
from ..errors import MMTPError
from ..protocol_base import ProtocolBase
from ..session import Outcome, Session

# The audit lines (who authenticated, key changes, deletions) share the protocol's logger.
log = logging.getLogger("mmtp.protocol")


class KeyHandlers(ProtocolBase):
    def _register_key(self, session: Session, data: dict[str, Any], now: int) -> Outcome:
        self._rate_check(session, now)
        try:
            return self._register_key_checked(session, data, now)
        except MMTPError as exc:
            if exc.code != errors.NOT_LOCAL:
                self.failures.record_failure(session.peer, now)
            raise

    def _register_key_checked(self, session: Session, data: dict[str, Any], now: int) -> Outcome:
        # NOT_LOCAL comes before the key is judged: it does not count as a failure.
        self._require_local(email_of(data))
        request = RegisterKeyRequest.from_data(data)
        email = request.email
        key = pgp.validate_public_key_for(
            request.public_key, email, now=datetime.fromtimestamp(now, UTC)
        )
        existing = self.store.get_key(email)
        # Identical means the same material, not only the same primary key: an update of the
        # same key (new subkey, new expiry, new user id) is a change like any other. Packets
        # are compared as a set: exports of one key may list them in another order.
        if existing is not None and openpgp_packets.material_digest(
            existing.armored
        ) == openpgp_packets.material_digest(key.armored):
            return Outcome(
                RegisterKeyAnswer(
                    message="This key is already registered", fingerprint=key.fingerprint
                ).to_response()
            )
        if existing is not None:
            if self._current_identity(session) is None:
                raise MMTPError(
                    errors.KEY_EXISTS,
                    f"{email} already has a key; authenticate as {email} (AUTH) to replace it",
                )
            if session.authenticated != email:
                raise MMTPError(
                    errors.FORBIDDEN,
                    f"this connection is authenticated as {session.authenticated}, not {email}",
                )
        self.store.put_key(email, key.armored, key.fingerprint, now)
        if session.authenticated == email:
            # The owner replaced its own key here: it stays authenticated.
            session.auth_fingerprint = key.fingerprint
        if existing is None:
            verb = "registered"
        elif existing.fingerprint == key.fingerprint:
            verb = "updated"
        else:
            verb = "replaced"
        log.info("audit: %s %s the key of %s (%s)", session.peer, verb, email, key.fingerprint)
        return Outcome(
            RegisterKeyAnswer(
                message=f"Public key {verb} successfully", fingerprint=key.fingerprint
            ).to_response(),
            durable=True,
        )

    def _request_public_key(self, session: Session, data: dict[str, Any], now: int) -> Outcome:
        email = RequestPublicKeyRequest.from_data(data).email
        self._require_local(email)
        record = self.store.get_key(email)
        if record is None:
            raise MMTPError(errors.KEY_NOT_FOUND, f"no public key is registered for {email}")
        answer = RequestPublicKeyAnswer(email, record.armored, record.fingerprint)
        return Outcome(answer.to_response())
