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
from .address import domain_of, normalize_address
from .canonical import auth_challenge
from .config import ServerConfig
from .errors import MMTPError
from .framing import NO_ID, parse_json, parse_request, peek_id, with_id
from .group_commit import GroupCommit, Withdrawable
from .hashcash import verify_stamp
from .packet import MAX_SIGNATURE_CHARS, is_message_id, validate_packet
from .ratelimit import FailureLimiter
from .session import Outcome, Session, cursor, ok, parse_cursor, storage_failure
from .store import Store, StoreError

log = logging.getLogger("mmtp.protocol")

ACTIONS = ("SEND", "RECEIVE", "CHECK", "DELETE", "REGISTER_KEY", "REQUEST_PUBLIC_KEY", "AUTH")
DEFAULT_RECEIVE_LIMIT = 100
MAX_RECEIVE_LIMIT = 1000
MAX_DELETE_IDS = 1000
# One RECEIVE answer stops near this size (`more` says the rest waits): a mailbox filled
# with large messages must not make one answer gigabytes long.
RECEIVE_BYTE_BUDGET = 8 * 1024 * 1024
MAX_ARMOR_CHARS = 64 * 1024
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

    def _email(self, data: dict[str, Any], key: str = "email") -> str:
        if key not in data:
            raise MMTPError(errors.BAD_REQUEST, f"data.{key} is missing")
        return normalize_address(data[key], key)

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
        email = self._email(data)
        self._require_auth_as(session, email)
        after = parse_cursor(data.get("since"))
        limit = data.get("limit", DEFAULT_RECEIVE_LIMIT)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise MMTPError(errors.BAD_REQUEST, "limit must be an integer from 1 to 1000")
        messages, more = self.store.list_messages(
            email, after, limit, max_bytes=RECEIVE_BYTE_BUDGET
        )
        last = messages[-1].seq if messages else after
        return Outcome(
            ok(
                messages=[m.packet for m in messages],
                count=len(messages),
                more=more,
                cursor=cursor(last),
            )
        )

    def _check(self, session: Session, data: dict[str, Any], now: int) -> Outcome:
        email = self._email(data)
        self._require_auth_as(session, email)
        return Outcome(ok(count=self.store.count_messages(email)))

    def _delete(self, session: Session, data: dict[str, Any], now: int) -> Outcome:
        email = self._email(data)
        self._require_auth_as(session, email)
        ids = data.get("messageIds")
        if not isinstance(ids, list) or len(ids) > MAX_DELETE_IDS:
            raise MMTPError(
                errors.BAD_REQUEST, f"messageIds must be a list of at most {MAX_DELETE_IDS} ids"
            )
        if not all(is_message_id(i) for i in ids):
            raise MMTPError(errors.BAD_REQUEST, "every messageId must be 32 lowercase hex")
        deleted = self.store.delete_messages(email, ids)
        log.info("audit: %s deleted %d of %d from %s", session.peer, deleted, len(ids), email)
        return Outcome(ok(deleted=deleted), durable=deleted > 0)

    def _register_key(self, session: Session, data: dict[str, Any], now: int) -> Outcome:
        self._rate_check(session, now)
        try:
            return self._register_key_checked(session, data, now)
        except MMTPError as exc:
            if exc.code != errors.NOT_LOCAL:
                self.failures.record_failure(session.peer, now)
            raise

    def _register_key_checked(self, session: Session, data: dict[str, Any], now: int) -> Outcome:
        email = self._email(data)
        self._require_local(email)
        armored = data.get("publicKey")
        if not isinstance(armored, str) or len(armored) > MAX_ARMOR_CHARS:
            raise MMTPError(errors.KEY_INVALID, "publicKey must be an ASCII-armored OpenPGP key")
        key = pgp.validate_public_key_for(armored, email, now=datetime.fromtimestamp(now, UTC))
        existing = self.store.get_key(email)
        # Identical means the same material, not only the same primary key: an update of the
        # same key (new subkey, new expiry, new user id) is a change like any other. Packets
        # are compared as a set: exports of one key may list them in another order.
        if existing is not None and openpgp_packets.material_digest(
            existing.armored
        ) == openpgp_packets.material_digest(key.armored):
            return Outcome(
                ok(message="This key is already registered", fingerprint=key.fingerprint)
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
            ok(message=f"Public key {verb} successfully", fingerprint=key.fingerprint),
            durable=True,
        )

    def _request_public_key(self, session: Session, data: dict[str, Any], now: int) -> Outcome:
        email = self._email(data)
        self._require_local(email)
        record = self.store.get_key(email)
        if record is None:
            raise MMTPError(errors.KEY_NOT_FOUND, f"no public key is registered for {email}")
        return Outcome(ok(email=email, publicKey=record.armored, fingerprint=record.fingerprint))

    def _auth(self, session: Session, data: dict[str, Any], now: int) -> Outcome:
        if not session.tls and not self.config.allow_plain_auth:
            raise MMTPError(
                errors.TLS_REQUIRED,
                "AUTH is refused over a plain connection; connect with TLS (port "
                f"{self.config.secure_port})",
            )
        self._rate_check(session, now)
        try:
            email = self._email(data)
            signature = data.get("signature")
            # The same bound as a message signature: a real detached signature is under 2 KB,
            # and PGPy parses every (unhashed) subpacket of a padded one on the loop thread.
            if not isinstance(signature, str) or len(signature) > MAX_SIGNATURE_CHARS:
                raise MMTPError(
                    errors.BAD_REQUEST,
                    "data.signature must be an ASCII-armored detached signature of at most "
                    f"{MAX_SIGNATURE_CHARS} characters",
                )
            key = self._public_key(email)
            challenge = auth_challenge(self.server_name, session.nonce, email)
            if key is None or not pgp.verify_detached(challenge, signature, key):
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
        return Outcome(ok(message="Authenticated", email=email))
