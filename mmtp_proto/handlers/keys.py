"""REGISTER_KEY and REQUEST_PUBLIC_KEY (SPEC §5): the key directory.

A submitted key is judged by a worker process (`pgp_jobs.check_key`), never on the loop
thread; only a text identical to the registered key is answered at once.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import errors, pgp_jobs
from ..actions import (
    RegisterKeyAnswer,
    RegisterKeyRequest,
    RequestPublicKeyAnswer,
    RequestPublicKeyRequest,
    email_of,
)
from ..deferred import JobResult, Pending
from ..errors import MMTPError
from ..protocol_base import ProtocolBase
from ..session import Outcome, Session
from ..store import KeyRecord

# The audit lines (who authenticated, key changes, deletions) share the protocol's logger.
log = logging.getLogger("mmtp.protocol")


class KeyHandlers(ProtocolBase):
    def _register_key(self, session: Session, data: dict[str, Any], now: int) -> Outcome | Pending:
        self._rate_check(session, now)
        return self._counting_failures(
            session, now, lambda: self._register_key_start(session, data, now)
        )

    def _register_key_start(
        self, session: Session, data: dict[str, Any], now: int
    ) -> Outcome | Pending:
        # NOT_LOCAL comes before the key is judged: it does not count as a failure.
        self._require_local(email_of(data))
        request = RegisterKeyRequest.from_data(data)
        email = request.email
        existing = self.store.get_key(email)
        if existing is not None and existing.armored == request.public_key:
            return self._already_registered(existing)
        self._cpu_check(session, now)
        return self._with_registered_key(
            session,
            email,
            pgp_jobs.check_key,
            lambda registered: (request.public_key, email, now, registered),
            lambda record, result: self._register_key_checked(session, email, record, result, now),
        )

    @staticmethod
    def _already_registered(existing: KeyRecord) -> Outcome:
        return Outcome(
            RegisterKeyAnswer(
                message="This key is already registered", fingerprint=existing.fingerprint
            ).to_response()
        )

    def _register_key_checked(
        self,
        session: Session,
        email: str,
        existing: KeyRecord | None,
        result: JobResult,
        now: int,
    ) -> Outcome:
        if not result.ok:
            raise self._job_failure(result, errors.KEY_INVALID, "checking this key")
        verdict, armored, fingerprint = result.value
        if verdict == "invalid":
            raise MMTPError(errors.KEY_INVALID, armored)
        # Identical means the same material, not only the same primary key: an update of the
        # same key (new subkey, new expiry, new user id) is a change like any other. Packets
        # are compared as a set: exports of one key may list them in another order.
        if verdict == "identical" and existing is not None:
            return self._already_registered(existing)
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
        self.store.put_key(email, armored, fingerprint, now)
        if session.authenticated == email:
            # The owner replaced its own key here: it stays authenticated.
            session.auth_fingerprint = fingerprint
        if existing is None:
            verb = "registered"
        elif existing.fingerprint == fingerprint:
            verb = "updated"
        else:
            verb = "replaced"
        log.info("audit: %s %s the key of %s (%s)", session.peer, verb, email, fingerprint)
        return Outcome(
            RegisterKeyAnswer(
                message=f"Public key {verb} successfully", fingerprint=fingerprint
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
