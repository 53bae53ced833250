"""A blocking MMTP client, for scripts and for the TUI's workers.

`Connection` speaks frames over one socket; `Client` adds TLS verification (ca, tofu,
insecure), keys, sealing, stamps and the design's API (`send_mail`, `generate_keys`, ...).
Server errors come back as `MMTPError` with the server's code and message; local problems
(refused certificate, unreachable host, missing key) as `LocalError`.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import errors, pgp
from .address import normalize_address
from .canonical import auth_challenge
from .errors import LocalError, MMTPError
from .framing import FrameDecoder, encode_frame, parse_json
from .keystore import Keystore
from .known_servers import KnownServers
from .message import OpenedMessage, open_message
from .minter import Minter, MintStatus
from .outgoing import Outgoing
from .sending import SendResult, difficulty_of, send_outgoing, stamp_packet

VERIFY_MODES = ("ca", "tofu", "insecure")
DEFAULT_TIMEOUT = 30.0
# Answers can hold 1000 stored messages; allow far more than a request may carry.
MAX_RESPONSE_BYTES = 256 * 1024 * 1024
_NOT_ECHOED = object()
# Seconds between send attempts after a lost connection (times the attempt number).
RETRY_PAUSE = 0.25


def _fingerprint(der: bytes) -> str:
    from .certs import fingerprint

    return fingerprint(der)


@dataclass
class ReceiveResult:
    messages: list[dict[str, Any]]
    count: int
    more: bool
    cursor: str


class Connection:
    """One socket, frames in and out, answers matched to requests by order and id."""

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
        self.closed = False
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
            self._decoder = FrameDecoder(MAX_RESPONSE_BYTES)
            self._lines: list[bytes] = []
            self._ids = itertools.count(1)
            self.greeting = self._read_frame()
        except BaseException:
            self.sock.close()
            raise
        if self.greeting.get("status") != "OK":
            err = MMTPError.from_response(self.greeting)
            self.sock.close()
            raise err

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

    def _read_frame(self) -> dict[str, Any]:
        try:
            return self._read_frame_unchecked()
        except (LocalError, MMTPError) as exc:
            # A late or garbled answer would be taken for the next request's: the
            # connection is out of step with the server, so it is closed, not reused.
            self.close()
            if isinstance(exc, MMTPError):
                raise LocalError(
                    f"{self.host}:{self.port} sent something that is not MMTP"
                ) from None
            raise

    def _read_frame_unchecked(self) -> dict[str, Any]:
        while not self._lines:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise LocalError(f"{self.host}:{self.port} did not answer in time") from None
            except OSError as exc:
                raise LocalError(f"connection to {self.host}:{self.port} lost: {exc}") from None
            if not data:
                raise LocalError(f"{self.host}:{self.port} closed the connection")
            self._lines.extend(self._decoder.feed(data))
            if self._decoder.broken:
                raise LocalError(f"{self.host}:{self.port} sent an oversized answer")
        value = parse_json(self._lines.pop(0))
        if not isinstance(value, dict):
            raise LocalError(f"{self.host}:{self.port} sent something that is not MMTP")
        return value

    def send_frames(self, requests: list[dict[str, Any]]) -> None:
        if self.closed:
            raise LocalError(f"the connection to {self.host}:{self.port} is closed; connect again")
        try:
            self.sock.sendall(b"".join(encode_frame(r) for r in requests))
        except OSError as exc:
            self.close()
            raise LocalError(f"connection to {self.host}:{self.port} lost: {exc}") from None

    def request(self, action: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one request; return the OK answer or raise the server's MMTPError."""
        return self.pipeline([(action, data or {})])[0]

    def pipeline(self, requests: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Send several requests at once; raise on the first error answer (in order)."""
        framed = [{"action": a, "id": next(self._ids), "data": d} for a, d in requests]
        self.send_frames(framed)
        answers = [self._read_frame() for _ in framed]
        for request, answer in zip(framed, answers, strict=True):
            # Every answer echoes its id, except an error for a frame the server could not
            # read as a request (FRAME_TOO_LARGE).
            echoed = answer.get("id", _NOT_ECHOED)
            if echoed != request["id"] and not (
                echoed is _NOT_ECHOED and answer.get("status") == "ERROR"
            ):
                self.close()
                raise LocalError("the server answered out of order; the connection was closed")
            if answer.get("status") != "OK":
                raise MMTPError.from_response(answer)
        return answers

    def close(self) -> None:
        self.closed = True
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

    def _conn(self) -> Connection:
        if self.connection is None:
            raise LocalError("not connected: call connect() first")
        return self.connection

    def request(self, action: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._conn().request(action, data)

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
        greeting = self.greeting
        challenge = auth_challenge(str(greeting["server"]), str(greeting["nonce"]), email)
        answer = self.request(
            "AUTH", {"email": email, "signature": pgp.sign_detached(challenge, key)}
        )
        self.authenticated_as = answer["email"]
        return answer["email"]

    def register_key(self, email: str, public_key: str) -> str:
        answer = self.request("REGISTER_KEY", {"email": email, "publicKey": public_key})
        return str(answer["fingerprint"])

    def register_public_key(self, email: str) -> str:
        """Register the public half of this client's key for `email`; return its fingerprint."""
        key = self.private_key(email)
        return self.register_key(normalize_address(email), key.public.armored)

    def request_public_key(self, email: str) -> pgp.PublicKey:
        """Fetch a key from the server's directory (cached for this client's lifetime)."""
        email = normalize_address(email)
        answer = self.request("REQUEST_PUBLIC_KEY", {"email": email})
        key = pgp.PublicKey.from_armored(answer["publicKey"])
        if key.fingerprint != answer.get("fingerprint"):
            raise LocalError(f"the server's key for {email} does not match its fingerprint")
        self._contacts[email] = key
        return key

    def check(self, email: str) -> int:
        return int(self.request("CHECK", {"email": email})["count"])

    def receive(self, email: str, since: str | None = None, limit: int | None = None):
        data: dict[str, Any] = {"email": email}
        if since is not None:
            data["since"] = since
        if limit is not None:
            data["limit"] = limit
        answer = self.request("RECEIVE", data)
        return ReceiveResult(answer["messages"], answer["count"], answer["more"], answer["cursor"])

    def receive_all(self, email: str, since: str | None = None) -> ReceiveResult:
        """Page through everything after `since`; the cursor points past the last message."""
        messages: list[dict[str, Any]] = []
        while True:
            page = self.receive(email, since=since, limit=1000)
            messages.extend(page.messages)
            since = page.cursor
            if not page.more:
                return ReceiveResult(messages, len(messages), False, page.cursor)

    def delete(self, email: str, message_ids: list[str]) -> int:
        return int(self.request("DELETE", {"email": email, "messageIds": message_ids})["deleted"])

    def send(self, packet: dict[str, Any]) -> dict[str, Any]:
        return self.request("SEND", {"packet": packet})

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
        )

    def _conn_tls(self) -> bool:
        return self.connection.tls if self.connection else self.use_tls

    def send_mail(
        self,
        sender: str,
        recipient: str,
        subject: str,
        body: str,
        encrypt: bool = True,
        sign: bool = True,
        *,
        attachments: list[dict[str, Any]] | None = None,
        type: str = "SEND",
        in_reply_to: str | None = None,
        references: list[str] | None = None,
        progress: Callable[[MintStatus], None] | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> SendResult:
        """Seal (encrypt, sign), stamp and send one message, the design's sendMail."""
        outgoing = Outgoing(
            to=[recipient],
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
        return send_outgoing(
            self,
            outgoing,
            sender=sender,
            sign_with=self.private_key(sender) if outgoing.sign else None,
            key_for=lambda email: self._contacts.get(email) or self.request_public_key(email),
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
