"""Federation actions (SPEC §8): POLICY, DOMAIN_KEY, DOMAIN_AUTH, and the two SEND branches
that involve another domain: queueing a local user's mail for a remote recipient (the home
server's side) and the rules of a domain-authenticated connection (the receiving side).

Fetches from other servers (the sending domain's keys, a sender's key, a remote's stamp
figures) run on the federation's threads: the request waits for the future (`deferred.Pending`).
A user's key fetched from its domain is then judged, and a relayed signature verified, by a
worker process (`pgp_jobs`), like every other piece of untrusted OpenPGP data: never on the
loop thread. A remote key that cannot be had, or a relayed signature that does not verify,
stores the message unverified (SPEC §8.3); only a pool too busy to check refuses it (INTERNAL,
the relay tries again later).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import errors, pgp_jobs, relay_policy
from ..actions import (
    DomainAuthAnswer,
    DomainAuthRequest,
    DomainKeyAnswer,
    DomainKeyRequest,
    PolicyAnswer,
    PolicyRequest,
    RequestPublicKeyAnswer,
)
from ..address import domain_of
from ..deferred import BUSY, JobResult, Pending
from ..domain_keys import check_auth_domains, verify_domain_auth
from ..errors import MMTPError
from ..federation import LOOKUPS_IN_FLIGHT_PER_SOURCE, Federation, RemoteKey
from ..hashcash import verify_stamp
from ..packet import Packet
from ..pgp_jobs import key_tag
from ..protocol_base import ProtocolBase
from ..session import Outcome, Session, ok

# What a continuation gets once a remote user's key is known: the key, or why there is none.
KeyThen = Callable[[RemoteKey | None, MMTPError | None], Outcome | Pending]


class RelayHandlers(ProtocolBase):
    # Set by the server when it relays (config `relay`); None: no federation at all.
    federation: Federation | None = None

    def _federation(self) -> Federation:
        if self.federation is None:
            raise MMTPError(
                errors.UNKNOWN_ACTION, "this server does not relay (features.relay is false)"
            )
        return self.federation

    # ------------------------------------------------------------------ POLICY, DOMAIN_KEY

    def _policy(self, session: Session, data: dict[str, Any], now: int) -> Outcome | Pending:
        domain = PolicyRequest.from_data(data).domain
        if domain in self.domains:
            cfg = self.config
            answer = PolicyAnswer(
                domain, True, cfg.difficulty, cfg.stamp_validity_seconds, cfg.max_frame_bytes
            )
            return Outcome(answer.to_response())
        if self.federation is None:
            self._require_local(f"x@{domain}")
        fed = self._federation()

        def answer() -> Outcome:
            policy = fed.policy(domain, max_age=3600)
            if policy is None:
                raise MMTPError(
                    errors.REMOTE_UNAVAILABLE,
                    f"the server of {domain} could not be reached; try again later",
                )
            return Outcome(
                PolicyAnswer(
                    domain,
                    False,
                    policy.difficulty,
                    policy.stamp_validity_seconds or self.config.stamp_validity_seconds,
                    policy.max_frame_bytes or self.config.max_frame_bytes,
                ).to_response()
            )

        if fed.policy(domain, max_age=3600) is not None:
            return answer()
        failed = fed.policy_failure(domain)
        if failed is not None:
            raise relay_policy.lookup_error(failed.code, failed.message, domain)
        self._count_lookup(session, now)
        future = fed.fetch_policy(domain)
        fed.track_lookup(session.peer, future)

        def then(result: JobResult) -> Outcome:
            exc = result.exception
            if isinstance(exc, MMTPError) and exc.code in (errors.NO_ROUTE,):
                raise MMTPError(exc.code, exc.message)
            if exc is not None and fed.policy(domain, max_age=3600) is None:
                code = getattr(exc, "code", errors.REMOTE_UNAVAILABLE)
                raise relay_policy.lookup_error(code, getattr(exc, "message", str(exc)), domain)
            return answer()

        return Pending.on_future(future, then)

    def _domain_key(self, session: Session, data: dict[str, Any], now: int) -> Outcome:
        fed = self._federation()
        domain = DomainKeyRequest.from_data(data).domain
        if domain not in self.domains:
            raise MMTPError(errors.NOT_LOCAL, f"{domain} is not a domain this server serves")
        answer = fed.keyring.answer(domain)
        return Outcome(DomainKeyAnswer(domain, answer["keys"], answer["ttl"]).to_response())

    def _count_lookup(self, session: Session, now: int) -> None:
        """A lookup for a client that needs a fetch from another server: at most
        LOOKUPS_PER_MINUTE per source IP (SPEC §8.4)."""
        fed = self._federation()
        if fed.lookups.blocked(session.peer, now):
            raise MMTPError(
                errors.RATE_LIMITED,
                "too many lookups of other domains from your address; wait a minute",
            )
        if fed.lookups_in_flight(session.peer) >= LOOKUPS_IN_FLIGHT_PER_SOURCE:
            raise MMTPError(
                errors.RATE_LIMITED,
                "your address has other lookups of other domains still waiting for their "
                "servers; try again once they are answered",
            )
        fed.lookups.record_failure(session.peer, now)

    def _remote_public_key(self, session: Session, email: str, now: int) -> Outcome | Pending:
        """REQUEST_PUBLIC_KEY for another domain's address, answered from its server (§8.4)."""

        def answer(key: RemoteKey | None, error: MMTPError | None) -> Outcome:
            if key is not None:
                return Outcome(
                    RequestPublicKeyAnswer(email, key.armored, key.fingerprint, True).to_response()
                )
            if error is None:
                error = MMTPError(errors.REMOTE_UNAVAILABLE, "no answer")
            if error.code == errors.KEY_INVALID:
                # Our own verdict on what the remote served (SPEC §8.4: a bad key is
                # KEY_INVALID, never passed on), not a refusal by the remote.
                raise MMTPError(
                    errors.KEY_INVALID,
                    f"the key {domain_of(email)} serves for {email} fails the checks a "
                    f"registration gets: {error.message}",
                )
            raise relay_policy.lookup_error(error.code, error.message, domain_of(email))

        return self._with_remote_key(session, email, now, answer, count=True)

    def _with_remote_key(
        self,
        session: Session,
        email: str,
        now: int,
        then: KeyThen,
        *,
        count: bool,
        fetched: bool = False,
    ) -> Outcome | Pending:
        """`then(key, error)` once `email`'s key is known: from the cache, else fetched from
        its domain's server (a lookup counted against this source when `count`), then judged
        by a worker like a registration (SPEC §8.3, §8.4)."""
        fed = self._federation()
        known, key, error = fed.remote_key(email)
        if known:
            return then(key, error)
        text = fed.fetched_key(email)
        if text is None:
            if fetched:  # the lookup left the cache at once (the cache was full)
                return then(None, MMTPError(errors.REMOTE_UNAVAILABLE, "the lookup was lost"))
            if count:
                self._count_lookup(session, now)
            future = fed.fetch_sender_key(email)
            if count:
                fed.track_lookup(session.peer, future)
            return Pending.on_future(
                future,
                lambda _result: self._with_remote_key(
                    session, email, now, then, count=False, fetched=True
                ),
            )
        fetched_text = text

        def judged(result: JobResult) -> Outcome | Pending:
            what = f"checking the key of {email}"
            if result.failure == BUSY:
                raise self._job_failure(result, errors.KEY_INVALID, what)
            key: RemoteKey | None = None
            error: MMTPError | None = None
            if not result.ok:
                error = self._job_failure(result, errors.KEY_INVALID, what)
            elif result.value[0] == "valid":
                key = RemoteKey(result.value[1], result.value[2])
            else:
                error = MMTPError(errors.KEY_INVALID, result.value[1])
            fed.note_judged(email, fetched_text, key, error)
            return then(key, error)

        return self._offload(
            session,
            pgp_jobs.validate_key,
            (fetched_text, email, now),
            judged,
            affinity=key_tag(fetched_text),
        )

    # ------------------------------------------------------------------ DOMAIN_AUTH

    def _domain_auth(self, session: Session, data: dict[str, Any], now: int) -> Outcome | Pending:
        fed = self._federation()
        if not session.tls:
            raise MMTPError(errors.TLS_REQUIRED, "DOMAIN_AUTH needs the TLS listener")
        if session.domain is not None:
            raise MMTPError(errors.BAD_REQUEST, "this connection is already domain-authenticated")
        self._rate_check(session, now)
        request = DomainAuthRequest.from_data(data)
        try:
            check_auth_domains(sorted(self.domains)[0], request.domain, self.domains)
            if fed.served_cert_hash is None:
                raise MMTPError(errors.AUTH_FAILED, "this server has no certificate to bind to")
            if fed.domain_keys.key(request.domain, request.key_id) is None and (
                fed.domain_keys.may_fetch(request.domain, request.key_id)
            ):
                return Pending.on_future(
                    fed.fetch_domain_keys(request.domain),
                    lambda _result: self._domain_auth_verify(session, request, now),
                )
            return self._domain_auth_verify(session, request, now)
        except MMTPError as exc:
            if exc.code == errors.AUTH_FAILED:
                self.failures.record_failure(session.peer, now)
            raise

    def _domain_auth_verify(
        self, session: Session, request: DomainAuthRequest, now: int
    ) -> Outcome:
        fed = self._federation()
        assert fed.served_cert_hash is not None
        keys = fed.domain_keys.keys(request.domain)
        if not keys:
            self.failures.record_failure(session.peer, now)
            raise MMTPError(
                errors.AUTH_FAILED, f"the domain keys of {request.domain} could not be had"
            )
        # The request does not name receiverDomain: it is whichever of our domains the
        # signature was made for.
        last: MMTPError | None = None
        for receiver in sorted(self.domains):
            try:
                verify_domain_auth(
                    keys,
                    key_id=request.key_id,
                    signature=request.signature,
                    receiver_domain=receiver,
                    nonce=session.nonce,
                    domain=request.domain,
                    cert_hash_hex=fed.served_cert_hash,
                )
            except MMTPError as exc:
                last = exc
                continue
            session.domain, session.receiver_domain = request.domain, receiver
            return Outcome(DomainAuthAnswer(request.domain).to_response())
        self.failures.record_failure(session.peer, now)
        assert last is not None
        raise last

    # ------------------------------------------------------------------ SEND, receiving side

    def _check_relayed(self, session: Session, packet: Packet) -> None:
        """A domain-authenticated connection's SEND (SPEC §8.3): its own domain's senders, to
        the domain it routed to."""
        if domain_of(packet.sender) != session.domain:
            raise MMTPError(
                errors.FORBIDDEN,
                f"this connection speaks for {session.domain}, not for {packet.sender}",
            )
        if domain_of(packet.recipient) != session.receiver_domain:
            raise MMTPError(
                errors.NOT_LOCAL,
                f"{packet.recipient} is not on {session.receiver_domain}; relayed mail is "
                "never relayed again",
            )

    def _with_relayed_signature(
        self,
        session: Session,
        packet: Packet,
        now: int,
        then: Callable[[bool], Outcome],
    ) -> Outcome | Pending:
        """`then(verified)`: whether the signature verifies against the sender's key fetched
        from its domain, checked by a worker. No key, or a signature that does not verify, is
        no refusal here (the owner may have rotated keys meanwhile): `then(False)`."""
        if packet.signature is None or self.federation is None:
            return then(False)
        signature, signed = packet.signature, packet.signature_input()

        def checked(result: JobResult) -> Outcome:
            if result.failure == BUSY:
                raise self._job_failure(result, errors.SIGNATURE_INVALID, "checking the signature")
            # A job stopped at its deadline or crashed says "not verified", like a bad one.
            return then(result.ok and result.value is True)

        def with_key(key: RemoteKey | None, _error: MMTPError | None) -> Outcome | Pending:
            if key is None:
                return then(False)
            args = (signed, signature, key.armored)
            return self._offload(
                session, pgp_jobs.verify, args, checked, affinity=key_tag(key.armored)
            )

        return self._with_remote_key(session, packet.sender, now, with_key, count=False)

    # ------------------------------------------------------------------ SEND, home side

    def _queue_remote(self, session: Session, packet: Packet, verified: bool, now: int) -> Outcome:
        """A local user's mail for another domain goes into the outbound queue (SPEC §8.5)."""
        fed = self._federation()
        if session.domain is not None:
            raise MMTPError(
                errors.NOT_LOCAL,
                f"{packet.recipient} is not on {session.receiver_domain}; relayed mail is "
                "never relayed again",
            )
        if domain_of(packet.sender) not in self.domains:
            raise MMTPError(
                errors.FORBIDDEN,
                f"{packet.sender} is not on a domain this server serves: this server relays "
                "only its own users' mail",
            )
        if self._current_identity(session) != packet.sender and not verified:
            raise MMTPError(
                errors.FORBIDDEN,
                f"relaying for {packet.sender} needs AUTH as that address or its signature",
            )
        summary = {
            "messageId": packet.message_id,
            "encrypted": packet.encrypted,
            "signed": packet.signature is not None,
            "signatureVerified": verified,
            "queued": True,
        }
        stored = self.store.find_queued_hash(packet.recipient, packet.sender, packet.message_id)
        if stored is not None:
            if stored != packet.message_hash:
                raise MMTPError(
                    errors.BAD_REQUEST,
                    "a different message with this messageId is already queued; "
                    "use a fresh messageId",
                )
            return Outcome(
                ok(message="Message already queued", duplicate=True, **summary), durable=True
            )
        domain = domain_of(packet.recipient)
        policy = fed.policy(domain)
        validity = self.config.stamp_validity_seconds
        difficulty = self.config.difficulty
        if policy is not None:
            difficulty = policy.difficulty
            validity = policy.stamp_validity_seconds or validity
        stamp = verify_stamp(
            packet.stamp,
            difficulty=difficulty,
            resource=packet.recipient,
            message_hash=packet.message_hash,
            now=now,
            validity_seconds=validity,
        )
        if self.store.is_spent(stamp.spent_key):
            raise MMTPError(
                errors.POW_REPLAYED, "this HashCash stamp was already spent; mint a new one"
            )
        self.store.enqueue(
            domain=domain,
            recipient=packet.recipient,
            sender=packet.sender,
            message_id=packet.message_id,
            message_hash=packet.message_hash,
            packet=packet.raw,
            now=now,
            expires_at=relay_policy.stamp_expires_at(packet.raw, validity),
            stamp_key=stamp.spent_key,
            stamp_expires_at=stamp.date + validity + 3600,
        )
        self.relay_queued = True
        return Outcome(
            ok(message="Message queued for relay", duplicate=False, **summary), durable=True
        )
