"""A blocking MMTP client, for scripts and for the TUI's workers.

`client_transport.Connection` speaks frames over one socket, with TLS verification (ca, tofu,
insecure); `Client` adds keys, sealing, stamps and the design's API (`send_mail`,
`generate_keys`, ...).
Server errors come back as `MMTPError` with the server's code and message; local problems
(refused certificate, unreachable host, missing key) as `LocalError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import actions, errors, pgp
from .address import normalize_address
from .canonical import auth_challenge
from .client_transport import DEFAULT_TIMEOUT, Connection
from .errors import LocalError, MMTPError
from .keystore import Keystore
from .known_servers import KnownServers
from .limits import MAX_RECEIVE_LIMIT
from .message import OpenedMessage, open_message, recipient_of
from .minter import Minter, MintStatus
from .outgoing import Outgoing
from .sending import SendResult, difficulty_of, send_outgoing, send_to_all, stamp_packet

# Seconds between send attempts after a lost connection (times the attempt number).
RETRY_PAUSE = 0.25

# One page of RECEIVE: messages, count, more, cursor.
ReceiveResult = actions.ReceiveAnswer


class Client:
    """The design's client in Python naming, plus the raw actions of SPEC §5."""

    def __init__(
        self,
        server_host: str = "localhost",
        server_port: int = 8025,
        secure_port: int = 8026,
        use_tls: bool = True,
        use_pgp: bool = True,
        *,
        verify: str = "tofu",
        ca_file: Path | None = None,
        known_servers: KnownServers | Path | None = None,
        keystore: Keystore | Path | None = None,
        on_new_fingerprint: Callable[[str, int, str], bool] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        mint_processes: int = 1,
    ) -> None:
        self.server_host = server_host
        self.server_port = server_port
        self.secure_port = secure_port
        self.use_tls = use_tls
        self.use_pgp = use_pgp
        self.verify = verify
        self.ca_file = ca_file
        self.known_servers = (
            KnownServers(known_servers) if isinstance(known_servers, Path) else known_servers
        )
        self.keystore = Keystore(keystore) if isinstance(keystore, Path) else keystore
        self.on_new_fingerprint = on_new_fingerprint
        self.timeout = timeout
        self.mint_processes = mint_processes
        self.connection: Connection | None = None
        self.authenticated_as: str | None = None
        self._keys: dict[str, pgp.PrivateKey] = {}
        self._contacts: dict[str, pgp.PublicKey] = {}
        self._policies: dict[str, actions.PolicyAnswer] = {}

    # ------------------------------------------------------------------ connection

    def connect(self, secure: bool | None = None) -> dict[str, Any]:
        """Connect (TLS unless `secure` is False or TLS is off); return the greeting."""
        self.disconnect()
        tls = self.use_tls if secure is None else secure
        self.connection = Connection(
            self.server_host,
            self.secure_port if tls else self.server_port,
            tls=tls,
            verify=self.verify,
            ca_file=self.ca_file,
            known_servers=self.known_servers,
            on_new_fingerprint=self.on_new_fingerprint,
            timeout=self.timeout,
        )
        self.authenticated_as = None
        return self.connection.greeting

    def disconnect(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None
        self.authenticated_as = None

    def is_connected(self) -> bool:
        return self.connection is not None and not self.connection.closed

    def __enter__(self) -> Client:
        if self.connection is None:
            self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    @property
    def greeting(self) -> dict[str, Any]:
        return self._conn().greeting

    @property
    def greeting_info(self) -> actions.Greeting:
        """The greeting, typed: `difficulty` falls back to limits.DEFAULT_DIFFICULTY."""
        return self._conn().greeting_info

    def _conn(self) -> Connection:
        if self.connection is None:
            raise LocalError("not connected: call connect() first")
        return self.connection

    def request(self, action: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._conn().request(action, data)

    def ask(self, request: actions.ActionRequest) -> dict[str, Any]:
        """Send a typed request; return the OK answer frame or raise the server's MMTPError."""
        return self._conn().ask(request)

    # ------------------------------------------------------------------ keys

    def _keystore(self) -> Keystore:
        if self.keystore is None:
            self.keystore = Keystore()
        return self.keystore

    def add_private_key(self, key: pgp.PrivateKey, email: str | None = None) -> None:
        self._keys[normalize_address(email or key.public.emails[0])] = key

    def private_key(self, email: str, passphrase: str | None = None) -> pgp.PrivateKey:
        email = normalize_address(email)
        key = self._keys.get(email)
        if key is None:
            key = self._keystore().load_private(email, passphrase)
            self._keys[email] = key
        return key

    def generate_keys(
        self,
        email: str,
        name: str,
        passphrase: str | None = None,
        algorithm: str = "rsa4096",
    ) -> pgp.PrivateKey:
        """Generate a key pair, keep it in the keystore (0600) and in memory."""
        email = normalize_address(email)
        key = pgp.generate_key(email, name, algorithm=algorithm, passphrase=passphrase)
        self._keystore().save_private(key, email)
        self._keys[email] = key
        return key

    # ------------------------------------------------------------------ actions

    def auth(self, email: str, key: pgp.PrivateKey | None = None) -> str:
        email = normalize_address(email)
        key = key or self.private_key(email)
        greeting = self.greeting_info
        challenge = auth_challenge(greeting.server, greeting.nonce, email)
        request = actions.AuthRequest(email, pgp.sign_detached(challenge, key))
        answer = actions.AuthAnswer.from_response(self.ask(request))
        self.authenticated_as = answer.email
        return answer.email

    def register_key(self, email: str, public_key: str, invite: str | None = None) -> str:
        answer = actions.RegisterKeyAnswer.from_response(
            self.ask(actions.RegisterKeyRequest(email, public_key, invite))
        )
        return answer.fingerprint

    def register_public_key(self, email: str) -> str:
        """Register the public half of this client's key for `email`; return its fingerprint."""
        key = self.private_key(email)
        return self.register_key(normalize_address(email), key.public.armored)

    def request_public_key(self, email: str) -> pgp.PublicKey:
        """Fetch a key from the server's directory (cached for this client's lifetime)."""
        email = normalize_address(email)
        answer = actions.RequestPublicKeyAnswer.from_response(
            self.ask(actions.RequestPublicKeyRequest(email))
        )
        key = pgp.PublicKey.from_armored(answer.public_key)
        if key.fingerprint != answer.fingerprint:
            raise LocalError(f"the server's key for {email} does not match its fingerprint")
        self._contacts[email] = key
        return key

    def check(self, email: str) -> int:
        return actions.CheckAnswer.from_response(self.ask(actions.CheckRequest(email))).count

    def receive(
        self, email: str, since: str | None = None, limit: int | None = None
    ) -> ReceiveResult:
        response = self.ask(actions.ReceiveRequest(email, since, limit))
        items = response.get("messages")
        if isinstance(items, list):  # a non-object cannot cost the page: open() reports it
            response["messages"] = [m if isinstance(m, dict) else {"unreadable": m} for m in items]
        return actions.ReceiveAnswer.from_response(response)

    def receive_all(self, email: str, since: str | None = None) -> ReceiveResult:
        """Page through everything after `since`; the cursor points past the last message."""
        messages: list[dict[str, Any]] = []
        while True:
            page = self.receive(email, since=since, limit=MAX_RECEIVE_LIMIT)
            messages.extend(page.messages)
            since = page.cursor
            if not page.more:
                return ReceiveResult(messages, len(messages), False, page.cursor)

    def delete(self, email: str, message_ids: list[str]) -> int:
        return actions.DeleteAnswer.from_response(
            self.ask(actions.DeleteRequest(email, message_ids))
        ).deleted

    def send(self, packet: dict[str, Any]) -> dict[str, Any]:
        return self.ask(actions.SendRequest(packet))

    def _minter(self) -> Minter:
        # One process means this one: a script's thread has no event loop to keep free.
        return Minter(processes=self.mint_processes if self.mint_processes > 1 else 0)

    def stamp(
        self,
        packet: dict[str, Any],
        *,
        progress: Callable[[MintStatus], None] | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> dict[str, Any]:
        """Mint the packet's stamp at the server's difficulty (from the greeting)."""
        return stamp_packet(
            packet,
            bits=difficulty_of(self.greeting),
            minter=self._minter(),
            progress=progress,
            cancel=cancel,
        )

    def send_packet(
        self,
        packet: dict[str, Any],
        *,
        retries: int = 2,
        restamp: Callable[[dict[str, Any]], None] | None = None,
    ) -> SendResult:
        """SEND with safe retries: the same messageId makes a resend a no-op duplicate.

        A lost connection is reopened (over the same transport, authenticated as before);
        a reconnect that fails uses up a retry like a failed send. An expired stamp is
        minted again by ``restamp`` (default: :meth:`stamp`).
        """
        # connect() forgets who the connection was: remember it to log in again.
        tls, authenticated_as = self._conn_tls(), self.authenticated_as
        reconnect = False
        for attempt in range(retries + 1):
            try:
                if reconnect:
                    self.connect(secure=tls)
                    if authenticated_as:
                        self.auth(authenticated_as)
                    reconnect = False
                answer = self.send(packet)
                break
            except LocalError:
                if attempt == retries:
                    raise
                reconnect = True
                time.sleep(RETRY_PAUSE * attempt)
            except MMTPError as exc:
                if exc.code != errors.POW_EXPIRED or attempt == retries:
                    raise
                (restamp or self.stamp)(packet)
        return SendResult(
            message_id=answer["messageId"],
            duplicate=bool(answer.get("duplicate")),
            encrypted=bool(answer["encrypted"]),
            signed=bool(answer["signed"]),
            signature_verified=bool(answer["signatureVerified"]),
            packet=packet,
            queued=answer.get("queued") is True,
        )

    def _conn_tls(self) -> bool:
        return self.connection.tls if self.connection else self.use_tls

    def policy(self, domain: str) -> actions.PolicyAnswer:
        """What a stamp for `domain` must be (POLICY, SPEC §8.4), asked once per client."""
        domain = domain.lower()
        answer = self._policies.get(domain)
        if answer is None:
            answer = actions.PolicyAnswer.from_response(self.ask(actions.PolicyRequest(domain)))
            self._policies[domain] = answer
        return answer

    def difficulty_for(self, domain: str) -> int:
        """The stamp bits for a recipient on `domain`: POLICY's answer, or the greeting's for
        a server that does not know POLICY (revision 1) or cannot reach the remote now (it
        then checks the stamp against its own figures and queues, SPEC §8.4)."""
        try:
            return self.policy(domain).difficulty
        except MMTPError as exc:
            if exc.code not in (errors.UNKNOWN_ACTION, errors.REMOTE_UNAVAILABLE):
                raise
            return difficulty_of(self.greeting)

    def send_mail(
        self,
        sender: str,
        to: str | list[str] | None = None,
        subject: str = "",
        body: str = "",
        encrypt: bool = True,
        sign: bool = True,
        *,
        cc: list[str] | None = None,
        bcc: list[str] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        type: str = "SEND",
        in_reply_to: str | None = None,
        references: list[str] | None = None,
        progress: Callable[[MintStatus], None] | None = None,
        cancel: Callable[[], bool] | None = None,
        notify: list[str] | None = None,
    ) -> Any:
        """Seal (encrypt, sign), stamp and send, the design's sendMail. `notify` asks for
        delivery reports (SPEC §10 `meta.notify`; None: the server's default).

        With `to` one address and no `cc`/`bcc`: one packet, its SendResult (errors raised).
        With lists (SPEC §9): one packet per recipient, each with its own stamp (POLICY says
        how hard, per domain) and signature; returns {recipient: SendResult or the error}.
        """
        several = not isinstance(to, str) or cc is not None or bcc is not None
        outgoing = Outgoing(
            to=[to] if isinstance(to, str) else list(to or []),
            cc=cc or [],
            bcc=bcc or [],
            subject=subject,
            body=body,
            attachments=attachments or [],
            type=type,
            in_reply_to=in_reply_to,
            references=references or [],
            encrypt=encrypt and self.use_pgp,
            sign=sign and self.use_pgp,
            notify=notify,
        )
        sender = normalize_address(sender, "sender")
        sign_with = self.private_key(sender) if outgoing.sign else None

        def key_for(email: str) -> pgp.PublicKey:
            return self._contacts.get(email) or self.request_public_key(email)

        if several:
            return send_to_all(
                self,
                outgoing,
                sender=sender,
                sign_with=sign_with,
                key_for=key_for,
                minter=self._minter(),
                progress=progress,
                cancel=cancel,
            )
        return send_outgoing(
            self,
            outgoing,
            sender=sender,
            sign_with=sign_with,
            key_for=key_for,
            minter=self._minter(),
            progress=progress,
            cancel=cancel,
        )

    def open(self, packet: dict[str, Any], email: str | None = None) -> OpenedMessage:
        """Decrypt and verify a received packet with this client's keys; a bad packet comes
        back `unreadable` (the reason in `problem`), never raised."""
        recipient = normalize_address(email) if email else recipient_of(packet) or ""
        my_key = self._keys.get(recipient)
        if my_key is None and recipient and self.keystore and self.keystore.has_private(recipient):
            my_key = self.private_key(recipient)
        return open_message(
            packet,
            my_key=my_key,
            sender_key_for=lambda sender: (
                self._contacts.get(sender) or self.request_public_key(sender)
            ),
        )
