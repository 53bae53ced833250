"""A blocking MMTP client, for scripts and for the TUI's workers.

`Connection` speaks frames over one socket; `Client` adds TLS verification (ca, tofu,
insecure), keys, sealing, stamps and the design's API (`send_mail`, `generate_keys`, ...).
Server errors come back as `MMTPError` with the server's code and message; local problems
(refused certificate, unreachable host, missing key) as `LocalError`.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import actions, errors, pgp
from .address import normalize_address
from .canonical import auth_challenge
from .client_connection import NEED_DATA, Answer, ClientConnection, Event, Greeted
from .errors import LocalError, MMTPError
from .keystore import Keystore
from .known_servers import KnownServers
from .limits import MAX_ANSWER_BYTES, MAX_RECEIVE_LIMIT
from .message import OpenedMessage, open_message
from .minter import Minter, MintStatus
from .outgoing import Outgoing
from .sending import SendResult, difficulty_of, send_outgoing, send_to_all, stamp_packet

VERIFY_MODES = ("ca", "tofu", "insecure")
DEFAULT_TIMEOUT = 30.0
MAX_RESPONSE_BYTES = MAX_ANSWER_BYTES
# Seconds between send attempts after a lost connection (times the attempt number).
RETRY_PAUSE = 0.25


def _fingerprint(der: bytes) -> str:
    from .certs import fingerprint

    return fingerprint(der)


# One page of RECEIVE: messages, count, more, cursor.
ReceiveResult = actions.ReceiveAnswer


class Connection:
    """One blocking socket (plain or TLS) around a sans-I/O `ClientConnection`, which owns
    the frames, the greeting, the request ids and the order of answers."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: bool = True,
        verify: str = "tofu",
        ca_file: Path | None = None,
        known_servers: KnownServers | None = None,
        on_new_fingerprint: Callable[[str, int, str], bool] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if verify not in VERIFY_MODES:
            raise LocalError(f"TLS verification must be one of {', '.join(VERIFY_MODES)}")
        self.host, self.port, self.tls = host, port, tls
        self.fingerprint: str | None = None
        self.client_connection = ClientConnection(
            f"{host}:{port}", max_answer_bytes=MAX_RESPONSE_BYTES
        )
        try:
            raw = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise LocalError(
                f"cannot connect to {host}:{port}: {exc.strerror or exc}; is the server running "
                "and the port right?"
            ) from None
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock: socket.socket = raw
        try:
            if tls:
                self.sock = self._wrap(raw, verify, ca_file, known_servers, on_new_fingerprint)
            event = self._next_event()
        except BaseException:
            self.close()
            raise
        if not isinstance(event, Greeted):  # the server closed before greeting
            self.close()
            raise LocalError(f"{host}:{port} closed the connection")
        # The greeting as sent (unknown keys included), and as the typed `greeting_info`.
        self.greeting: dict[str, Any] = event.frame
        self.greeting_info: actions.Greeting = event.greeting

    def _wrap(
        self,
        raw: socket.socket,
        verify: str,
        ca_file: Path | None,
        known: KnownServers | None,
        on_new: Callable[[str, int, str], bool] | None,
    ) -> ssl.SSLSocket:
        if verify == "ca":
            context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        else:
            # tofu and insecure check the certificate themselves (pinning) or not at all.
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            sock = context.wrap_socket(raw, server_hostname=self.host)
        except ssl.SSLCertVerificationError as exc:
            raise LocalError(
                f"the TLS certificate of {self.host}:{self.port} is not trusted "
                f"({exc.verify_message}); use verification 'tofu' to pin a self-signed one"
            ) from None
        except (ssl.SSLError, OSError) as exc:
            raise LocalError(f"TLS with {self.host}:{self.port} failed: {exc}") from None
        try:
            self._check_certificate(sock, verify, known, on_new)
        except BaseException:
            # The handshake is done, so the TLS socket owns the descriptor: close it here.
            sock.close()
            raise
        return sock

    def _check_certificate(
        self,
        sock: ssl.SSLSocket,
        verify: str,
        known: KnownServers | None,
        on_new: Callable[[str, int, str], bool] | None,
    ) -> None:
        der = sock.getpeercert(binary_form=True)
        if der is None:
            raise LocalError(f"{self.host}:{self.port} sent no TLS certificate")
        self.fingerprint = _fingerprint(der)
        if verify == "tofu":
            known = known or KnownServers()
            if not known.check(self.host, self.port, self.fingerprint):
                if on_new is not None and not on_new(self.host, self.port, self.fingerprint):
                    raise LocalError(
                        f"the certificate of {self.host}:{self.port} was not accepted "
                        f"(fingerprint {self.fingerprint})"
                    )
                known.pin(self.host, self.port, self.fingerprint)

    @property
    def closed(self) -> bool:
        return self.client_connection.closed

    def _next_event(self) -> Event:
        """Read until the sans-I/O connection has an event. Any failure closes the connection:
        a late or garbled answer would be taken for the next request's, so it is not reused."""
        where = f"{self.host}:{self.port}"
        while True:
            try:
                event = self.client_connection.next_event()
            except (LocalError, MMTPError):
                self.close()
                raise
            if event is not NEED_DATA:
                return event
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                self.close()
                raise LocalError(f"{where} did not answer in time") from None
            except OSError as exc:
                self.close()
                raise LocalError(f"connection to {where} lost: {exc}") from None
            self.client_connection.receive_data(data)

    def _transmit(self) -> None:
        """Write what the sans-I/O connection has queued."""
        data = self.client_connection.data_to_send()
        try:
            self.sock.sendall(data)
        except OSError as exc:
            self.close()
            raise LocalError(f"connection to {self.host}:{self.port} lost: {exc}") from None

    def request(self, action: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one request; return the OK answer or raise the server's MMTPError."""
        return self.pipeline([(action, data or {})])[0]

    def ask(self, request: actions.ActionRequest) -> dict[str, Any]:
        """`request` for a typed request; the OK answer is for its answer type to parse."""
        return self.request(request.ACTION, request.to_data())

    def pipeline(self, requests: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Send several requests at once; raise on the first error answer (in order).

        Every answer is read before raising, so the connection stays in step.
        """
        for action, data in requests:
            self.client_connection.send_request(action, data)
        answers: list[Answer] = []
        try:
            self._transmit()
            while len(answers) < len(requests):
                event = self._next_event()
                if not isinstance(event, Answer):  # cannot happen while requests wait
                    raise LocalError(f"{self.host}:{self.port} closed the connection")
                answers.append(event)
        except BaseException:
            # Interrupted (Ctrl-C, a worker cancelled) with answers still owed: their late
            # arrival would be taken for the next request's, so the connection goes.
            self.close()
            raise
        for answer in answers:
            if not answer.ok:
                raise answer.error()
        return [answer.frame for answer in answers]

    def close(self) -> None:
        self.client_connection.close()
        with contextlib.suppress(OSError):
            self.sock.close()


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

    def register_key(self, email: str, public_key: str) -> str:
        answer = actions.RegisterKeyAnswer.from_response(
            self.ask(actions.RegisterKeyRequest(email, public_key))
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
        return actions.ReceiveAnswer.from_response(
            self.ask(actions.ReceiveRequest(email, since, limit))
        )

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
    ) -> Any:
        """Seal (encrypt, sign), stamp and send, the design's sendMail.

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
        """Decrypt and verify a received packet with this client's keys."""
        recipient = normalize_address(email or packet.get("recipient"))
        my_key = self._keys.get(recipient)
        if my_key is None and self.keystore is not None and self.keystore.has_private(recipient):
            my_key = self.private_key(recipient)
        return open_message(
            packet,
            my_key=my_key,
            sender_key_for=lambda sender: (
                self._contacts.get(sender) or self.request_public_key(sender)
            ),
        )
