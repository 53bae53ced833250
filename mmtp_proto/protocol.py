"""What each MMTP action answers, given a store and a session (SPEC §5). No sockets.

A `server_connection.ServerConnection` feeds it one frame line at a time. Writes are staged
in the store; an answer marked `durable` is promised to `self.commits` (group_commit) and
leaves only after `commit()`; a failed commit or a rollback withdraws it.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from . import __version__, errors, openpgp_packets, pgp
from .actions import (
    AuthAnswer,
    AuthRequest,
    CheckAnswer,
    CheckRequest,
    DeleteAnswer,
    DeleteRequest,
    ReceiveAnswer,
    ReceiveRequest,
    RegisterKeyAnswer,
    RegisterKeyRequest,
    RequestPublicKeyAnswer,
    RequestPublicKeyRequest,
    email_of,
)
from .address import domain_of
from .canonical import auth_challenge
from .config import ServerConfig
from .errors import MMTPError
from .framing import NO_ID, parse_json, parse_request, peek_id, with_id
from .group_commit import GroupCommit, Withdrawable
from .hashcash import verify_stamp
from .limits import RECEIVE_BYTE_BUDGET
from .packet import validate_packet
from .ratelimit import FailureLimiter
from .session import Outcome, Session, cursor, ok, parse_cursor, storage_failure
from .store import Store, StoreError

log = logging.getLogger("mmtp.protocol")

ACTIONS = ("SEND", "RECEIVE", "CHECK", "DELETE", "REGISTER_KEY", "REQUEST_PUBLIC_KEY", "AUTH")
_KEY_CACHE_SIZE = 1024


class Protocol:
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
        self._handlers: dict[str, Callable[[Session, dict[str, Any], int], Outcome]] = {
            "SEND": self._send,
            "RECEIVE": self._receive,
            "CHECK": self._check,
            "DELETE": self._delete,
            "REGISTER_KEY": self._register_key,
            "REQUEST_PUBLIC_KEY": self._request_public_key,
            "AUTH": self._auth,
        }

    # ------------------------------------------------------------------ entry points

    def handle_line(self, session: Session, line: bytes) -> Outcome:
        request_id: Any = NO_ID
        action = "-"
        try:
            value = parse_json(line)
            request_id = peek_id(value)
            request = parse_request(value)
            action = request.action
            handler = self._handlers.get(request.action)
            if request.action != "SEND" and self.commits.pending:
                # What this request reads (a key for AUTH, messages for RECEIVE) must be
                # committed, never a write a failed commit could still take back. SENDs, the
                # hot path, still share one commit.
                self.commit()
            if handler is None:
                raise MMTPError(
                    errors.UNKNOWN_ACTION,
                    f"unknown action {request.action[:40]!r}; this server knows "
                    + ", ".join(ACTIONS),
                )
            outcome = handler(session, request.data, int(self.clock()))
        except MMTPError as exc:
            outcome = Outcome(exc.to_response())
        except StoreError as exc:
            self._withdraw(self.commits.abort())
            log.error("storage error during %s: %s", action, exc)
            outcome = Outcome(storage_failure().to_response())
        except Exception:
            self._withdraw(self.commits.abort())
            log.exception("internal error during %s", action)
            outcome = Outcome(
                MMTPError(
                    errors.INTERNAL, "the server failed on this request; try again later"
                ).to_response()
            )
        # A rollback (here or in an earlier commit step) took back what earlier requests of
        # this turn staged: their answers are withdrawn now. Later requests start a new
        # transaction, and their answers depend on the commit as usual.
        self._withdraw(self.commits.lost())
        outcome.action = action if action in self._handlers else "-"
        with_id(outcome.response, request_id)
        return outcome

    def commit(self) -> None:
        """Make this turn's writes durable; withdraw the answers a failure took back."""
        self._withdraw(self.commits.commit())

    @staticmethod
    def _withdraw(answers: list[Withdrawable]) -> None:
        for answer in answers:
            answer.withdraw()

    # ------------------------------------------------------------------ helpers

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
        record = self.store.get_key(email)
        if record is None or record.fingerprint != session.auth_fingerprint:
            session.authenticated = session.auth_fingerprint = None
            return None
        return email

    def _require_auth_as(self, session: Session, email: str) -> None:
        if self._current_identity(session) is None:
            raise MMTPError(errors.AUTH_REQUIRED, f"authenticate as {email} first (AUTH)")
        if session.authenticated != email:
            raise MMTPError(
                errors.FORBIDDEN,
                f"this connection is authenticated as {session.authenticated}, not {email}",
            )

    def _public_key(self, email: str) -> pgp.PublicKey | None:
        record = self.store.get_key(email)
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

    # ------------------------------------------------------------------ actions

    def _send(self, session: Session, data: dict[str, Any], now: int) -> Outcome:
        packet = validate_packet(data.get("packet"), now=now)
        self._require_local(packet.recipient)
        if self.store.get_key(packet.recipient) is None:
            raise MMTPError(
                errors.UNKNOWN_RECIPIENT,
                f"{packet.recipient} has no mailbox here (no key registered); check the address",
            )
        stamp = verify_stamp(
            packet.stamp,
            difficulty=self.config.difficulty,
            resource=packet.recipient,
            message_hash=packet.message_hash,
            now=now,
            validity_seconds=self.config.stamp_validity_seconds,
        )
        verified = False
        if packet.signature is not None:
            sender_key = self._public_key(packet.sender)
            if sender_key is not None:
                if not pgp.verify_detached(packet.signature_input(), packet.signature, sender_key):
                    raise MMTPError(
                        errors.SIGNATURE_INVALID,
                        f"the signature does not verify against the key registered for "
                        f"{packet.sender}; sign the message with that key",
                    )
                verified = True
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
        stored_hash = self.store.find_message_hash(packet.recipient, packet.message_id)
        if stored_hash is not None:
            if stored_hash != packet.message_hash:
                raise MMTPError(
                    errors.BAD_REQUEST,
                    "a different message with this messageId is already stored; "
                    "use a fresh messageId",
                )
            # The original may be staged in this very turn: the answer waits for its commit
            # and is withdrawn with it.
            return Outcome(
                ok(message="Message already delivered", duplicate=True, **summary), durable=True
            )
        if self.store.count_messages(packet.recipient) >= self.config.mailbox_max_messages:
            raise MMTPError(
                errors.MAILBOX_FULL, f"the mailbox of {packet.recipient} is full; try later"
            )
        if self.store.is_spent(stamp.spent_key):
            raise MMTPError(
                errors.POW_REPLAYED, "this HashCash stamp was already spent; mint a new one"
            )
        stored = dict(packet.raw)
        stored["meta"] = {**packet.raw["meta"], "signatureVerified": verified, "receivedAt": now}
        self.store.add_message(
            recipient=packet.recipient,
            message_id=packet.message_id,
            message_hash=packet.message_hash,
            packet=stored,
            received_at=now,
            stamp_key=stamp.spent_key,
            stamp_expires_at=stamp.date + self.config.stamp_validity_seconds,
        )
        return Outcome(
            ok(message="Message delivered successfully", duplicate=False, **summary),
            durable=True,
        )

    def _receive(self, session: Session, data: dict[str, Any], now: int) -> Outcome:
        # The owner is checked before the rest of the request is judged.
        self._require_auth_as(session, email_of(data))
        request = ReceiveRequest.from_data(data)
        after = parse_cursor(request.since)
        messages, more = self.store.list_messages(
            request.email, after, request.page_size, max_bytes=RECEIVE_BYTE_BUDGET
        )
        last = messages[-1].seq if messages else after
        return Outcome(
            ReceiveAnswer(
                messages=[m.packet for m in messages],
                count=len(messages),
                more=more,
                cursor=cursor(last),
            ).to_response()
        )

    def _check(self, session: Session, data: dict[str, Any], now: int) -> Outcome:
        request = CheckRequest.from_data(data)
        self._require_auth_as(session, request.email)
        return Outcome(CheckAnswer(count=self.store.count_messages(request.email)).to_response())

    def _delete(self, session: Session, data: dict[str, Any], now: int) -> Outcome:
        self._require_auth_as(session, email_of(data))
        request = DeleteRequest.from_data(data)
        deleted = self.store.delete_messages(request.email, request.message_ids)
        return Outcome(DeleteAnswer(deleted=deleted).to_response(), durable=deleted > 0)

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
            key = self._public_key(email)
            challenge = auth_challenge(self.server_name, session.nonce, email)
            if key is None or not pgp.verify_detached(challenge, request.signature, key):
                raise MMTPError(
                    errors.AUTH_FAILED,
                    f"authentication as {email} failed: sign this connection's challenge with "
                    "the private key registered for that address",
                )
        except MMTPError:
            self.failures.record_failure(session.peer, now)
            raise
        session.authenticated = email
        session.auth_fingerprint = key.fingerprint
        return Outcome(AuthAnswer(message="Authenticated", email=email).to_response())
