"""One blocking socket (plain or TLS) around the sans-I/O `ClientConnection`.

TLS verification lives here (ca, tofu with a loud refusal on change, insecure only when asked);
frames, the greeting, request ids and the order of answers belong to `client_connection`.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import actions
from .client_connection import NEED_DATA, Answer, ClientConnection, Event, Greeted
from .errors import LocalError, MMTPError
from .known_servers import KnownServers
from .limits import MAX_ANSWER_BYTES

VERIFY_MODES = ("ca", "tofu", "insecure")
DEFAULT_TIMEOUT = 30.0
MAX_RESPONSE_BYTES = MAX_ANSWER_BYTES


def _fingerprint(der: bytes) -> str:
    from .certs import fingerprint

    return fingerprint(der)


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
