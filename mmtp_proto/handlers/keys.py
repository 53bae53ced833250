"""REGISTER_KEY and REQUEST_PUBLIC_KEY (SPEC §5): the key directory."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from .. import errors, key_merge, openpgp_packets, pgp
from ..actions import (
    RegisterKeyAnswer,
    RegisterKeyRequest,
    RequestPublicKeyAnswer,
    RequestPublicKeyRequest,
    email_of,
)
from ..address import domain_of
from ..errors import MMTPError
from ..registration import invite_digest, is_reserved
from ..session import Outcome, Session
from ..store import KeyRecord
from .relay import RelayHandlers

# The audit lines (who authenticated, key changes, deletions) share the protocol's logger.
log = logging.getLogger("mmtp.protocol")


class KeyHandlers(RelayHandlers):
    def _register_key(self, session: Session, data: dict[str, Any], now: int) -> Outcome:
        self._rate_check(session, now)
        try:
            return self._register_key_checked(session, data, now)
        except MMTPError as exc:
            # NOT_LOCAL and the registration limit are not failed attempts.
            if exc.code not in {errors.NOT_LOCAL, errors.RATE_LIMITED}:
                self.failures.record_failure(session.peer, now)
            raise

    def _register_key_checked(self, session: Session, data: dict[str, Any], now: int) -> Outcome:
        # NOT_LOCAL comes before the key is judged: it does not count as a failure.
        self._require_local(email_of(data))
        request = RegisterKeyRequest.from_data(data)
        email = request.email
        when = datetime.fromtimestamp(now, UTC)
        if self.store.account(email).disabled:
            raise MMTPError(
                errors.FORBIDDEN,
                f"the account {email} is disabled by this server's operator; ask them",
            )
        existing = self.store.get_key(email)
        if existing is None:
            return self._register_new(session, request, now)
        # Identical means the same material, not only the same primary key. Packets are
        # compared as a set: exports of one key may list them in another order.
        if _digest(existing.armored) == _digest(request.public_key):
            return _answer("This key is already registered", existing.fingerprint)
        if key_merge.primary_fingerprint(request.public_key) == existing.fingerprint:
            return self._renew(session, email, existing, request.public_key, when, now)
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
        key = pgp.validate_public_key_for(request.public_key, email, now=when)
        self.store.put_key(email, key.armored, key.fingerprint, now)
        # The owner replaced its own key here: it stays authenticated.
        session.auth_fingerprint = key.fingerprint
        _audit(session, "replaced", email, key.fingerprint)
        return _answer("Public key replaced successfully", key.fingerprint, durable=True)

    def _register_new(self, session: Session, request: RegisterKeyRequest, now: int) -> Outcome:
        """SPEC §5 registration policy: held names, invites, reserved names, the operator's
        policy and the per-IP limit, then the key's own rules."""
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
        key = pgp.validate_public_key_for(
            request.public_key, email, now=datetime.fromtimestamp(now, UTC)
        )
        if invite is not None:
            # The same transaction as the key: a failed commit gives the invite back.
            self.store.spend_invite(invite)
        else:
            self.registrations.record(session.peer, now)
        self.store.put_key(email, key.armored, key.fingerprint, now)
        _audit(session, "registered", email, key.fingerprint)
        return _answer("Public key registered successfully", key.fingerprint, durable=True)

    def _renew(
        self,
        session: Session,
        email: str,
        existing: KeyRecord,
        offered: str,
        when: datetime,
        now: int,
    ) -> Outcome:
        """SPEC §5 renewal: the same primary key, merged without AUTH."""
        try:
            merged_text = key_merge.merge(existing.armored, offered)
        except ValueError as exc:
            raise MMTPError(
                errors.KEY_INVALID, f"the public key could not be read: {exc}"
            ) from None
        if _digest(merged_text) == _digest(existing.armored):
            return _answer("This key is already registered", existing.fingerprint)
        stored = self._public_key(email)
        merged = pgp.PublicKey.from_armored(merged_text)
        if stored is None or not key_merge.renews(stored, merged, when):
            # Nothing only the key's holder could have made: nothing changes.
            return _answer("This key adds nothing newer; nothing changed", existing.fingerprint)
        if key_merge.revocation(stored, when) is not None:
            raise MMTPError(
                errors.KEY_INVALID,
                f"the key registered for {email} is revoked; only the server's operator can "
                "register a new one for this address",
            )
        if key_merge.revocation(merged, when) == "valid":
            # The owner revoked the key: the directory must say so from now on.
            verb = "revoked"
        else:
            pgp.validate_public_key_for(merged_text, email, now=when)
            verb = "renewed"
        self.store.put_key(email, merged_text, existing.fingerprint, now)
        _audit(session, verb, email, existing.fingerprint)
        return _answer(f"Public key {verb} successfully", existing.fingerprint, durable=True)

    def _request_public_key(self, session: Session, data: dict[str, Any], now: int) -> Outcome:
        email = RequestPublicKeyRequest.from_data(data).email
        if domain_of(email) not in self.domains and self.federation is not None:
            return self._remote_public_key(session, email, now)
        self._require_local(email)
        record = self._active_key(email)
        if record is None:
            raise MMTPError(errors.KEY_NOT_FOUND, f"no public key is registered for {email}")
        answer = RequestPublicKeyAnswer(email, record.armored, record.fingerprint)
        return Outcome(answer.to_response())


def _digest(armored: str) -> str | None:
    try:
        return openpgp_packets.material_digest(armored)
    except ValueError:
        return None


def _answer(message: str, fingerprint: str, *, durable: bool = False) -> Outcome:
    return Outcome(
        RegisterKeyAnswer(message=message, fingerprint=fingerprint).to_response(), durable=durable
    )


def _audit(session: Session, verb: str, email: str, fingerprint: str) -> None:
    log.info("audit: %s %s the key of %s (%s)", session.peer, verb, email, fingerprint)
