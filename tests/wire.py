"""`Wire`: the one raw-socket client of the tests.

Deliberately dumber than `mmtp_proto.client.Connection`: it sends whatever bytes a test
crafts and hands back every answer as a dict, errors included, so tests can look at the
exact frames the server produces. Every read has a deadline, so a misbehaving server fails
a test instead of hanging it.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections import deque
from typing import Any, Protocol

from mmtp_proto import pgp
from mmtp_proto.canonical import auth_challenge
from mmtp_proto.framing import FrameDecoder, encode_frame, parse_json

READ_TIMEOUT = 15.0
MAX_ANSWER_BYTES = 256 * 1024 * 1024


class Closed(EOFError):
    """The server closed the connection (EOF or reset)."""


class Listening(Protocol):
    plain_address: tuple[str, int] | None
    tls_address: tuple[str, int] | None


def client_tls_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class Wire:
    """One raw connection: bytes out, dict answers in, nothing hidden.

    `target` is a running server (TLS unless `tls=False`) or an address (plain unless
    `tls=True`). With `greet=False` the greeting is left unread.
    """

    def __init__(
        self,
        target: Listening | tuple[str, int],
        *,
        tls: bool | None = None,
        timeout: float = READ_TIMEOUT,
        greet: bool = True,
    ) -> None:
        if isinstance(target, tuple):
            address: tuple[str, int] | None = target
            tls = bool(tls)
        else:
            tls = tls is not False
            address = target.tls_address if tls else target.plain_address
        assert address is not None, "that listener is off"
        self.address = address
        self.tls = tls
        self.timeout = timeout
        raw = socket.create_connection(address, timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock: socket.socket = raw
        try:
            if tls:
                self.sock = client_tls_context().wrap_socket(raw, server_hostname="localhost")
            self._decoder = FrameDecoder(MAX_ANSWER_BYTES)
            self._lines: deque[bytes] = deque()
            self._ids = 0
            self.greeting: dict[str, Any] = self.read() if greet else {}
        except BaseException:
            # After the handshake the TLS socket owns the descriptor (`raw` is detached and
            # closing it does nothing): a greeting that fails must close the TLS socket, or
            # its ResourceWarning fails whichever test runs when it is collected.
            self.sock.close()
            raw.close()
            raise

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    # -- bytes out

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, value: Any) -> None:
        self.send_bytes(encode_frame(value))

    def send_in_background(self, data: bytes) -> threading.Thread:
        """sendall() in a thread, for a client that writes more than it reads."""

        def run() -> None:
            with contextlib.suppress(OSError):
                self.sock.sendall(data)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    # -- answers in

    def read_line(self, timeout: float | None = None) -> bytes:
        """The next line (without LF); `Closed` at EOF, `TimeoutError` past the deadline."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self._lines:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer in time")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise TimeoutError("no answer in time") from None
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError) as exc:
                raise Closed(str(exc)) from None
            if not data:
                raise Closed("the server closed the connection")
            self._lines.extend(self._decoder.feed(data))
        return self._lines.popleft()

    def read(self, timeout: float | None = None) -> dict[str, Any]:
        value = parse_json(self.read_line(timeout))
        assert isinstance(value, dict), value
        return value

    def closed_by_server(self) -> bool:
        """True when the server has closed (EOF or reset) with nothing more to say."""
        try:
            self.read_line()
        except Closed:
            return True
        return False

    def wait_closed(self, timeout: float) -> list[dict[str, Any]]:
        """Read until the server closes; return the answers seen. TimeoutError if it doesn't."""
        frames: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                frames.append(self.read(timeout=max(0.0, deadline - time.monotonic())))
            except Closed:
                return frames

    # -- requests

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def send_request(self, action: str, data: dict[str, Any] | None = None, **extra: Any) -> Any:
        """Send one request (a fresh numeric id unless `id=` is given); return its id."""
        # None is a real id (JSON null), so only an absent `id` means a fresh one.
        request_id = extra.pop("id") if "id" in extra else self.next_id()
        self.send_frame({"action": action, "id": request_id, "data": data or {}, **extra})
        return request_id

    def send_batch(self, requests: list[tuple[str, dict[str, Any]]]) -> list[int]:
        """Several requests in one write, so the server reads them in the same turn."""
        ids = [self.next_id() for _ in requests]
        frames = [
            encode_frame({"action": action, "id": request_id, "data": data})
            for request_id, (action, data) in zip(ids, requests, strict=True)
        ]
        self.send_bytes(b"".join(frames))
        return ids

    def request(self, action: str, data: dict[str, Any] | None = None, **extra: Any):
        """Send one request; return the answer (OK or ERROR) as a dict, checking its id."""
        request_id = self.send_request(action, data, **extra)
        answer = self.read()
        assert answer.get("id") == request_id, (action, request_id, answer)
        return answer

    def auth(self, email: str, key: pgp.PrivateKey) -> dict[str, Any]:
        challenge = auth_challenge(str(self.greeting["server"]), str(self.greeting["nonce"]), email)
        return self.request(
            "AUTH", {"email": email, "signature": pgp.sign_detached(challenge, key)}
        )
