"""REGISTER_KEY and REQUEST_PUBLIC_KEY (SPEC §5): the key directory.

A submitted key is judged by a worker process (`pgp_jobs.judge_key`: the identical-key
comparison, renewal's merge and checks, validation), never on the loop thread; only a text
identical to the registered key is answered at once. The registration policy is checked
before the job (a refusal costs no parsing) and again in the continuation, which decides.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from .. import errors, pgp_jobs
from ..actions import (
    RegisterKeyAnswer,
    RegisterKeyRequest,
    RequestPublicKeyAnswer,
    RequestPublicKeyRequest,
    email_of,
)
from ..address import domain_of
from ..deferred import JobResult, Pending
from ..errors import MMTPError
from ..registration import invite_digest, is_reserved
from ..session import Outcome, Session
from ..store import KeyRecord
from .relay import RelayHandlers

# The audit lines (who authenticated, key changes, deletions) share the protocol's logger.
log = logging.getLogger("mmtp.protocol")


class KeyHandlers(RelayHandlers):
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
        if self.store.account(email).disabled:
            raise MMTPError(
                errors.FORBIDDEN,
                f"the account {email} is disabled by this server's operator; ask them",
            )
        existing = self.store.get_key(email)
        if existing is None:
            self._registration_policy(session, request, now)
        elif existing.armored == request.public_key:
            return _answer("This key is already registered", existing.fingerprint)
        self._cpu_check(session, now)
        may_replace = self._current_identity(session) == email
        return self._with_registered_key(
            session,
            email,
            pgp_jobs.judge_key,
            lambda registered: (request.public_key, email, now, registered, may_replace),
            lambda record, result: self._register_key_checked(
                session, request, record, result, now
            ),
        )

    def _registration_policy(
        self, session: Session, request: RegisterKeyRequest, now: int
    ) -> str | None:
        """SPEC §5 registration policy for a new address: held names, invites, reserved
        names, the operator's policy and the per-IP limit. The invite's digest, if any."""
        email = request.email
        until = self.store.held_until(email, now)
        if until is not None:
            raise MMTPError(
                errors.FORBIDDEN,
                f"{email} belonged to a deleted account and cannot be claimed before "
                f"{datetime.fromtimestamp(until, UTC):%Y-%m-%d} UTC; choose another name",
            )
        invite = None if request.invite is None else invite_digest(request.invite)
        if invite is not None:
            if not self.store.invite_is_valid(invite, email, now):
                raise MMTPError(
                    errors.FORBIDDEN,
                    f"this invite is not valid for {email} (wrong, used or expired); ask the "
                    "operator for a new one",
                )
        elif is_reserved(email, self.config.reserved_names + self.store.reserved_names()):
            raise MMTPError(
                errors.FORBIDDEN, f"{email} is a reserved name; only the operator can assign it"
            )
        elif self.config.registration != "open":
            how = "with an invite" if self.config.registration == "invite" else "by the operator"
            raise MMTPError(
                errors.FORBIDDEN,
                f"new addresses on this server are registered only {how}; ask its operator",
            )
        elif not self.registrations.allowed(session.peer, now):
            raise MMTPError(
                errors.RATE_LIMITED,
                "too many new addresses were registered from your address; try again in an hour",
            )
        return invite

    def _register_key_checked(
        self,
        session: Session,
        request: RegisterKeyRequest,
        existing: KeyRecord | None,
        result: JobResult,
        now: int,
    ) -> Outcome:
        email = request.email
        if not result.ok:
            raise self._job_failure(result, errors.KEY_INVALID, "checking this key")
        verdict, text, fingerprint = result.value
        if verdict == "invalid":
            raise MMTPError(errors.KEY_INVALID, text)
        if existing is None:
            # Checked again: an invite may have been spent, or the limit reached, meanwhile.
            invite = self._registration_policy(session, request, now)
            if invite is not None:
                # The same transaction as the key: a failed commit gives the invite back.
                self.store.spend_invite(invite)
            else:
                self.registrations.record(session.peer, now)
            self.store.put_key(email, text, fingerprint, now)
            _audit(session, "registered", email, fingerprint)
            return _answer("Public key registered successfully", fingerprint, durable=True)
        if verdict == "identical":
            return _answer("This key is already registered", existing.fingerprint)
        if verdict == "nothing-newer":
            # Nothing only the key's holder could have made: nothing changes.
            return _answer("This key adds nothing newer; nothing changed", existing.fingerprint)
        if verdict == "stored-revoked":
            raise MMTPError(
                errors.KEY_INVALID,
                f"the key registered for {email} is revoked; only the server's operator can "
                "register a new one for this address",
            )
        if verdict in ("revoked", "renewed"):
            # SPEC §5 renewal: the same primary key, merged without AUTH.
            self.store.put_key(email, text, existing.fingerprint, now)
            _audit(session, verdict, email, existing.fingerprint)
            return _answer(f"Public key {verdict} successfully", existing.fingerprint, durable=True)
        # Another key in place of the registered one: only its owner may do that.
        if self._current_identity(session) is None:
            raise MMTPError(
                errors.KEY_EXISTS,
                f"{email} already has a key; authenticate as {email} (AUTH) to replace it",
            )
        if session.authenticated != email or verdict == "replacement":
            raise MMTPError(
                errors.FORBIDDEN,
                f"this connection is authenticated as {session.authenticated}, not {email}",
            )
        self.store.put_key(email, text, fingerprint, now)
        # The owner replaced its own key here: it stays authenticated.
        session.auth_fingerprint = fingerprint
        _audit(session, "replaced", email, fingerprint)
        return _answer("Public key replaced successfully", fingerprint, durable=True)

    def _request_public_key(
        self, session: Session, data: dict[str, Any], now: int
    ) -> Outcome | Pending:
        email = RequestPublicKeyRequest.from_data(data).email
        if domain_of(email) not in self.domains and self.federation is not None:
            return self._remote_public_key(session, email, now)
        self._require_local(email)
        record = self._active_key(email)
        if record is None:
            raise MMTPError(errors.KEY_NOT_FOUND, f"no public key is registered for {email}")
        answer = RequestPublicKeyAnswer(email, record.armored, record.fingerprint)
        return Outcome(answer.to_response())


def _answer(message: str, fingerprint: str, *, durable: bool = False) -> Outcome:
    return Outcome(
        RegisterKeyAnswer(message=message, fingerprint=fingerprint).to_response(), durable=durable
    )


def _audit(session: Session, verb: str, email: str, fingerprint: str) -> None:
    log.info("audit: %s %s the key of %s (%s)", session.peer, verb, email, fingerprint)
