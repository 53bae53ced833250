"""SEND (SPEC §3-§5): validate the packet, the stamp, the signature and the sender rule; store.

A signature is verified by a worker process (`pgp_jobs.verify`), never on the loop thread; one
that does not verify counts as a failure for the source, and past the limit that source's
signed SENDs are refused before anything is verified.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .. import errors, pgp_jobs
from ..address import domain_of
from ..deferred import JobResult, Pending
from ..errors import MMTPError
from ..hashcash import Stamp, verify_stamp
from ..packet import Packet, validate_packet
from ..session import Outcome, Session, ok
from ..store import KeyRecord, stored_text
from .relay import RelayHandlers

T = TypeVar("T")


class SendHandler(RelayHandlers):
    def _send(self, session: Session, data: dict[str, Any], now: int) -> Outcome | Pending:
        packet = validate_packet(
            data.get("packet"),
            now=now,
            stamp_validity_seconds=self.config.stamp_validity_seconds,
        )
        if session.domain is not None:
            # Relayed to us (SPEC §8.3): its signature is checked once the rest holds.
            self._check_relayed(session, packet)
        elif domain_of(packet.sender) not in self.domains:
            # Relay or not: only a connection domain-authenticated for the sender's domain
            # speaks for it, and such a connection took the branch above.
            raise MMTPError(
                errors.FORBIDDEN,
                f"{packet.sender} is not on a domain this server serves, and this connection "
                f"is not domain-authenticated for {domain_of(packet.sender)}: send as your "
                "own address here (AUTH, or sign with its registered key), or have the "
                "sender's own domain server deliver it (SPEC §3)",
            )
        elif domain_of(packet.recipient) not in self.domains and self.federation is not None:
            return self._with_local_signature(
                session,
                packet,
                now,
                lambda verified: self._queue_remote(session, packet, verified, now),
            )
        self._require_local(packet.recipient)
        if self._active_key(packet.recipient) is None:
            raise MMTPError(
                errors.UNKNOWN_RECIPIENT,
                f"{packet.recipient} has no mailbox here (no key registered); check the address",
            )
        # A retry after a lost OK, or a re-send after DELETE (the tombstone), answers
        # "duplicate" before any other check (SPEC §5), even once its stamp is spent or
        # expired. The write itself finds such a copy, and any refusal first looks for one
        # (`_unless_delivered`): on PostgreSQL a look is a round trip. A relayed SEND is
        # looked up first, before its sender's key is fetched; a signed one whose stamp
        # this process stored recently (a retry, or a replay), before a worker spends CPU
        # on its signature.
        stamp = self._unless_delivered(packet, lambda: self._verify_stamp(packet, now))
        if isinstance(stamp, Outcome):
            return stamp
        if session.domain is not None or (
            packet.signature is not None and self.stamps_taken.seen(stamp.spent_key)
        ):
            delivered = self._delivered(packet)
            if delivered is not None:
                return delivered
        if session.domain is not None:
            return self._with_relayed_signature(
                session,
                packet,
                now,
                lambda verified: self._send_checked(session, packet, stamp, verified, now),
            )
        return self._with_local_signature(
            session,
            packet,
            now,
            lambda verified: self._send_checked(session, packet, stamp, verified, now),
        )

    def _verify_stamp(self, packet: Packet, now: int) -> Stamp:
        return verify_stamp(
            packet.stamp,
            difficulty=self.config.difficulty,
            resource=packet.recipient,
            message_hash=packet.message_hash,
            now=now,
            validity_seconds=self.config.stamp_validity_seconds,
        )

    def _unless_delivered(self, packet: Packet, run: Callable[[], T]) -> T | Outcome:
        """`run()`, unless it refuses a message that was delivered already (stored, or
        deleted with a tombstone): then the answer is "duplicate", as if that had been
        looked up first. Only a refusal costs the look."""
        try:
            return run()
        except MMTPError:
            delivered = self._delivered(packet)
            if delivered is None:
                raise
            return delivered

    def _delivered(self, packet: Packet) -> Outcome | None:
        """The "duplicate" answer if this message was delivered already, else None."""
        found = self.store.find_delivered(packet.recipient, packet.sender, packet.message_id)
        return None if found is None else self._duplicate(packet, *found)

    def _with_local_signature(
        self,
        session: Session,
        packet: Packet,
        now: int,
        then: Callable[[bool], Outcome],
    ) -> Outcome | Pending:
        """`then(verified)`: whether the signature verifies against the sender's key registered
        here, checked by a worker (SPEC §3); one that does not is refused and counted."""
        if packet.signature is None or self._active_key(packet.sender) is None:
            return then(False)
        self._rate_check(session, now)
        self._cpu_check(session, now)
        signature, signed = packet.signature, packet.signature_input()
        return self._with_registered_key(
            session,
            packet.sender,
            pgp_jobs.verify,
            lambda armored: (signed, signature, armored),
            # A retry of a message delivered already (this process did not look first: see
            # `_send`) is "duplicate" even if its signature no longer verifies (a new key).
            lambda record, result: self._unless_delivered(
                packet, lambda: self._send_verified(session, packet, record, result, now, then)
            ),
        )

    def _send_verified(
        self,
        session: Session,
        packet: Packet,
        record: KeyRecord | None,
        result: JobResult,
        now: int,
        then: Callable[[bool], Outcome],
    ) -> Outcome:
        if not result.ok:
            error = self._job_failure(result, errors.SIGNATURE_INVALID, "checking the signature")
            if error.code != errors.INTERNAL:
                self.failures.record_failure(session.peer, now)
            raise error
        if record is not None and not result.value:
            self.failures.record_failure(session.peer, now)
            raise MMTPError(
                errors.SIGNATURE_INVALID,
                f"the signature does not verify against the key registered for "
                f"{packet.sender}; sign the message with that key",
            )
        # No key registered any more (it went while the job ran): stored unverified.
        return then(record is not None)

    def _send_checked(
        self, session: Session, packet: Packet, stamp: Stamp, verified: bool, now: int
    ) -> Outcome:
        # The same message may have been stored while its signature was checked (or its
        # sender's key fetched): still a duplicate.
        return self._unless_delivered(
            packet, lambda: self._store_checked(session, packet, stamp, verified, now)
        )

    def _store_checked(
        self, session: Session, packet: Packet, stamp: Stamp, verified: bool, now: int
    ) -> Outcome:
        if (
            domain_of(packet.sender) in self.domains
            and self._current_identity(session) != packet.sender
            and not verified
        ):
            raise MMTPError(
                errors.FORBIDDEN,
                f"{packet.sender} is a local address: authenticate as it (AUTH) or sign the "
                "message with its registered key",
            )
        summary = {
            "messageId": packet.message_id,
            "encrypted": packet.encrypted,
            "signed": packet.signature is not None,
            "signatureVerified": verified,
        }
        if self.federation is not None:
            summary["queued"] = False
        stored = dict(packet.raw)
        stored["meta"] = {**packet.raw["meta"], "signatureVerified": verified, "receivedAt": now}
        text = stored_text(stored)
        # The write checks the quota and spends the stamp only if it was not spent yet
        # (POW_REPLAYED otherwise), and stores nothing under an id delivered already: no
        # look before it (on PostgreSQL a look is a round trip). There the write is
        # pipelined, and what it found is settled once the round's COMMIT brought it back
        # (`_settled`), before any answer leaves.
        self.stamps_taken.add(stamp.spent_key)
        confirm = self.store.stage_message(
            recipient=packet.recipient,
            sender=packet.sender,
            text=text,
            message_id=packet.message_id,
            message_hash=packet.message_hash,
            packet=stored,
            received_at=now,
            stamp_key=stamp.spent_key,
            stamp_expires_at=stamp.date + self.config.stamp_validity_seconds,
            quota=self._quota(packet.recipient),
        )
        outcome = Outcome(
            ok(message="Message delivered successfully", duplicate=False, **summary),
            durable=True,
        )
        if confirm is not None:
            outcome.settle = lambda: self._settled(packet, confirm)
        return outcome

    def _settled(self, packet: Packet, confirm: Callable[[], object]) -> dict[str, Any] | None:
        """The answer instead of "delivered" when the pipelined write was refused: the same
        one the write gives when it refuses at once."""
        try:
            settled = self._unless_delivered(packet, confirm)
        except MMTPError as exc:
            return exc.to_response()
        return settled.response if isinstance(settled, Outcome) else None

    def _duplicate(self, packet: Packet, stored_hash: str, verified: bool) -> Outcome:
        if stored_hash != packet.message_hash:
            raise MMTPError(
                errors.BAD_REQUEST,
                "a different message with this messageId was already delivered; "
                "use a fresh messageId",
            )
        # The original may be staged in this very turn: the answer waits for its commit and
        # is withdrawn with it. What it says about the signature is what was stored.
        return Outcome(
            ok(
                message="Message already delivered",
                duplicate=True,
                messageId=packet.message_id,
                encrypted=packet.encrypted,
                signed=packet.signature is not None,
                signatureVerified=verified,
            ),
            durable=True,
        )

    def _quota(self, recipient: str) -> tuple[int, int]:
        """SPEC §5: a message count and a byte quota per mailbox (the operator may set either
        per account with mmtp-admin quota set). The store checks it in the write itself, so
        it holds across processes."""
        account = self.store.account(recipient)
        max_messages = account.max_messages
        max_bytes = account.max_bytes
        if max_messages is None:
            max_messages = self.config.mailbox_max_messages
        if max_bytes is None:
            max_bytes = self.config.mailbox_max_bytes
        return max_messages, max_bytes
