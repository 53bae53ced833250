"""One blocking relay connection to another domain's server (SPEC §8.1–§8.3).

`RelayLink.open(domain, targets, tls)` tries the targets in order (a dead first target never
hides a live second one), verifies the certificate (`relay_tls`), reads the greeting and checks
that the remote serves `domain`. Requests then go out pipelined through a sans-I/O
`ClientConnection`. This runs on delivery and fetch threads, never on the server's loop.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from . import errors, relay_policy
from .actions import Greeting
from .client_connection import NEED_DATA, Answer, ClientConnection, Greeted
from .errors import LocalError, MMTPError
from .limits import MAX_KEY_ARMOR_CHARS
from .relay_tls import RelayTLS
from .routing import Target

log = logging.getLogger("mmtp.relay")

LINK_TIMEOUT = 20.0
# The longest one step (open: connect, TLS, greeting; or the wait for one answer) may take in
# all: a per-read timeout alone lets a remote that sends a byte now and then hold a delivery
# worker or a fetch thread forever.
LINK_DEADLINE = 60.0
# Answers to relay requests are small (the biggest is a user's key, whose armor REGISTER_KEY
# keeps under MAX_KEY_ARMOR_CHARS): a line longer than this is no answer, and is not buffered
# further.
MAX_RELAY_ANSWER_BYTES = 4 * MAX_KEY_ARMOR_CHARS
# Addresses one attempt connects to at most, over all targets: DNS may name many (a victim's),
# and each dead one costs a connect timeout.
MAX_ADDRESSES = 10
SEND_CHUNK_BYTES = 64 * 1024
SEND_ALLOWANCE_BYTES = 1 << 20


def _unavailable(message: str) -> MMTPError:
    return MMTPError(errors.REMOTE_UNAVAILABLE, message)


class RelayLink:
    """A verified TLS connection to `domain`'s server; `cert_hash` is for DOMAIN_AUTH."""

    def __init__(
        self,
        sock: socket.socket,
        conn: ClientConnection,
        domain: str,
        target: Target,
        cert: str,
        deadline: float = LINK_DEADLINE,
    ) -> None:
        self.sock = sock
        self.deadline = deadline
        self.conn = conn
        self.domain = domain
        self.target = target
        self.cert_hash = cert
        self.greeting: Greeting | None = None

    @classmethod
    def open(
        cls,
        domain: str,
        targets: list[Target],
        tls: RelayTLS,
        *,
        timeout: float = LINK_TIMEOUT,
        deadline: float = LINK_DEADLINE,
        max_answer_bytes: int = MAX_RELAY_ANSWER_BYTES,
        setup: Callable[[RelayLink], None] | None = None,
    ) -> RelayLink:
        """The first target that answers (and passes `setup`, DOMAIN_AUTH for a delivery);
        REMOTE_UNAVAILABLE when none does, NO_ROUTE when one answered for another domain.
        A `setup` failure moves on to the next target unless it is permanent (SPEC §8.5)."""
        last: MMTPError = _unavailable(f"no server of {domain} could be reached")
        candidates = [(t, a) for t in targets for a in t.addresses or (t.host,)]
        for target, address in candidates[:MAX_ADDRESSES]:
            try:
                link = cls._open_one(
                    domain, target, address, tls, timeout, deadline, max_answer_bytes
                )
            except MMTPError as exc:
                log.info("relay: %s (%s) for %s: %s", target, address, domain, exc.message)
                last = exc
                if exc.code == errors.NO_ROUTE:
                    raise
                continue
            if setup is None:
                return link
            try:
                setup(link)
                return link
            except MMTPError as exc:
                link.close()
                log.warning("relay: %s refused DOMAIN_AUTH: %s", target, exc)
                if not relay_policy.try_next_target(exc.code, "domain_auth"):
                    raise
                last = exc
        raise last

    @classmethod
    def _open_one(
        cls,
        domain: str,
        target: Target,
        address: str,
        tls: RelayTLS,
        timeout: float,
        deadline: float,
        max_answer_bytes: int,
    ) -> RelayLink:
        until = time.monotonic() + deadline
        timeout = min(timeout, deadline)
        try:
            raw = socket.create_connection((address, target.port), timeout=timeout)
        except OSError as exc:
            raise _unavailable(f"cannot connect to {target}: {exc.strerror or exc}") from None
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock, cert = tls.wrap_and_verify(raw, domain, target, until)
        conn = ClientConnection(str(target), max_answer_bytes=max_answer_bytes)
        link = cls(sock, conn, domain, target, cert, deadline)
        try:
            event = link._next(until)
            if not isinstance(event, Greeted):
                raise _unavailable(f"{target} closed the connection before greeting")
            link.greeting = event.greeting
            if domain not in [d.lower() for d in event.greeting.domains]:
                raise MMTPError(
                    errors.NO_ROUTE, f"{target} does not serve {domain} (its greeting says so)"
                )
        except BaseException:
            link.close()
            raise
        return link

    def _next(self, until: float) -> Any:
        """The next event, read by `until` (time.monotonic()) at the latest."""
        while True:
            try:
                event = self.conn.next_event()
            except LocalError as exc:
                raise _unavailable(f"{self.target}: {exc}") from None
            if event is not NEED_DATA:
                return event
            left = until - time.monotonic()
            if left <= 0:
                raise _unavailable(f"{self.target} did not answer within {self.deadline:g} s")
            try:
                self.sock.settimeout(min(left, LINK_TIMEOUT))
                data = self.sock.recv(65536)
            except OSError as exc:
                raise _unavailable(f"{self.target} did not answer: {exc}") from None
            self.conn.receive_data(data)

    def exchange(self, requests: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Send the requests pipelined; return the answer frames (OK or ERROR) in order. Fewer
        answers than requests when the remote closed the connection after an answer (say,
        FRAME_TOO_LARGE); REMOTE_UNAVAILABLE when it went away before answering anything."""
        for action, data in requests:
            self.conn.send_request(action, data)
        try:
            self._send_all(self.conn.data_to_send())
        except OSError as exc:
            self.close()
            raise _unavailable(f"connection to {self.target} lost: {exc}") from None
        answers: list[dict[str, Any]] = []
        while len(answers) < len(requests):
            try:
                # Each whole answer earns the next one its own time: a long pipeline is
                # bounded per answer, a trickle by the deadline.
                event = self._next(time.monotonic() + self.deadline)
            except MMTPError:
                self.close()
                if answers:
                    return answers
                raise
            if not isinstance(event, Answer):
                break
            answers.append(event.frame)
        return answers

    def _send_all(self, data: bytes) -> None:
        """`sendall` with a deadline: a remote that stops reading (or reads a byte now and
        then) gets the deadline once, plus once more per MiB sent (a big batch on a slow
        line is no attack)."""
        until = time.monotonic() + self.deadline * (1 + len(data) // SEND_ALLOWANCE_BYTES)
        view = memoryview(data)
        while view:
            left = until - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.target} stopped reading")
            self.sock.settimeout(min(left, LINK_TIMEOUT))
            sent = self.sock.send(view[:SEND_CHUNK_BYTES])
            view = view[sent:]

    def request(self, action: str, data: dict[str, Any]) -> dict[str, Any]:
        """One request; the OK frame, or the remote's error raised as MMTPError."""
        answers = self.exchange([(action, data)])
        if not answers:
            raise _unavailable(f"{self.target} closed the connection")
        if answers[0].get("status") != "OK":
            raise MMTPError.from_response(answers[0])
        return answers[0]

    @property
    def closed(self) -> bool:
        return self.conn.closed

    def close(self) -> None:
        self.conn.close()
        with contextlib.suppress(OSError):
            self.sock.close()
