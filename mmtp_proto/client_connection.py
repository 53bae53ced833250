"""The client side of one MMTP connection, with no I/O in it (SPEC §1), the way h11 works.

Bytes from the server go in with `receive_data` (`b""` when the server closed), events come
out of `next_event`, requests go in with `send_request`/`send` and the bytes to write come out
of `data_to_send`. Sockets, TLS and clocks belong to whoever runs it: the blocking `client.
Connection`, or a server's selectors loop relaying to another server.

What it owns: the frame decoder (answers bounded by `max_answer_bytes`, nesting by
`framing.parse_json`), the greeting, request ids (1, 2, 3, ...) and the order of answers.
An answer that does not echo the id of the oldest request still waiting (a late answer, a
garbled one, one nobody asked for) puts the connection out of step with the server: it is
`ConnectionBroken`, and the connection is closed, never reused.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from .actions import ActionRequest, Greeting
from .errors import LocalError, MMTPError
from .framing import FrameDecoder, encode_frame, parse_json
from .limits import MAX_ANSWER_BYTES


class ConnectionBroken(LocalError):
    """The server's bytes cannot be trusted any more; the connection is closed."""


class State(Enum):
    AWAITING_GREETING = "awaiting greeting"
    OPEN = "open"
    CLOSED = "closed"


class NeedData(Enum):
    # `next_event` found no complete frame: feed more bytes with `receive_data`.
    NEED_DATA = "NEED_DATA"


NEED_DATA: Final = NeedData.NEED_DATA


@dataclass(frozen=True)
class Greeted:
    """The server's greeting arrived (and said OK)."""

    greeting: Greeting
    frame: dict[str, Any]


@dataclass(frozen=True)
class Answer:
    """The answer to request `request_id`, OK or ERROR, as the server sent it."""

    request_id: int
    action: str
    frame: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.frame.get("status") == "OK"

    def error(self) -> MMTPError:
        """The server's error as an exception (for an answer that is not OK)."""
        return MMTPError.from_response(self.frame)


@dataclass(frozen=True)
class Closed:
    """The server closed the connection with no request waiting for an answer."""


Event = Greeted | Answer | Closed

_NOT_ECHOED = object()


class ClientConnection:
    """One connection to a server, as state: feed it bytes, take its events and its bytes."""

    def __init__(
        self, peer: str = "the server", *, max_answer_bytes: int = MAX_ANSWER_BYTES
    ) -> None:
        # Names the server in error messages ("host:port"); nothing here connects to it.
        self.peer = peer
        self.state = State.AWAITING_GREETING
        self.greeting: Greeting | None = None
        self.greeting_frame: dict[str, Any] | None = None
        self._decoder = FrameDecoder(max_answer_bytes)
        self._lines: deque[bytes] = deque()
        self._eof = False
        self._out = bytearray()
        self._ids = itertools.count(1)
        self._pending: deque[tuple[int, str]] = deque()
        self._failure: LocalError | MMTPError | None = None

    # ------------------------------------------------------------------ state

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def pending(self) -> tuple[tuple[int, str], ...]:
        """The (id, action) of every request sent and not yet answered, oldest first."""
        return tuple(self._pending)

    def close(self) -> None:
        """This side gives up the connection: nothing more is sent or read."""
        self.state = State.CLOSED
        self._out.clear()

    # ------------------------------------------------------------------ requests out

    def send_request(self, action: str, data: dict[str, Any] | None = None) -> int:
        """Queue one request frame; return the id its answer will echo.

        Requests may be queued before the greeting arrives and several at once (pipelining).
        """
        if self.closed:
            raise LocalError(f"the connection to {self.peer} is closed; connect again")
        request_id = next(self._ids)
        self._out += encode_frame({"action": action, "id": request_id, "data": data or {}})
        self._pending.append((request_id, action))
        return request_id

    def send(self, request: ActionRequest) -> int:
        return self.send_request(request.ACTION, request.to_data())

    def data_to_send(self) -> bytes:
        """The bytes queued so far, for the caller to write; the queue is emptied."""
        data = bytes(self._out)
        self._out.clear()
        return data

    # ------------------------------------------------------------------ answers in

    def receive_data(self, data: bytes) -> None:
        """Bytes the server sent; `b""` means it closed its side."""
        if self.closed or self._eof:
            return
        if not data:
            self._eof = True
            return
        self._lines.extend(self._decoder.feed(data))

    def next_event(self) -> Event | NeedData:
        """The next event, or NEED_DATA.

        Raises `ConnectionBroken` when the server's bytes are not MMTP or out of step (and
        keeps raising it), and the greeting's `MMTPError` when the server refused the
        connection (TOO_MANY_CONNECTIONS); the connection is closed either way.
        """
        if self._failure is not None:
            raise self._failure
        if self.closed:
            return Closed()
        if self._lines:
            frame = self._parse(self._lines.popleft())
            if self.state is State.AWAITING_GREETING:
                return self._greeted(frame)
            return self._answer(frame)
        if self._decoder.broken:
            raise self._fail(ConnectionBroken(f"{self.peer} sent an oversized answer"))
        if self._eof:
            if self._pending or self.state is State.AWAITING_GREETING:
                raise self._fail(ConnectionBroken(f"{self.peer} closed the connection"))
            self.state = State.CLOSED
            return Closed()
        return NEED_DATA

    def _parse(self, line: bytes) -> dict[str, Any]:
        try:
            value = parse_json(line)
        except MMTPError:
            value = None
        if not isinstance(value, dict):
            raise self._fail(ConnectionBroken(f"{self.peer} sent something that is not MMTP"))
        return value

    def _greeted(self, frame: dict[str, Any]) -> Greeted:
        if frame.get("status") != "OK":
            raise self._fail(MMTPError.from_response(frame))
        try:
            greeting = Greeting.from_response(frame)
        except LocalError:
            raise self._fail(
                ConnectionBroken(f"{self.peer} sent something that is not MMTP")
            ) from None
        self.state = State.OPEN
        self.greeting, self.greeting_frame = greeting, frame
        return Greeted(greeting, frame)

    def _answer(self, frame: dict[str, Any]) -> Answer:
        # Every answer echoes its id, except an error for a frame the server could not read
        # as a request (FRAME_TOO_LARGE).
        echoed = frame.get("id", _NOT_ECHOED)
        expected = self._pending[0] if self._pending else None
        # `type(...) is int`: JSON true or 1.0 compare equal to 1 in Python, but are not it.
        matches = expected is not None and type(echoed) is int and echoed == expected[0]
        unreadable = echoed is _NOT_ECHOED and frame.get("status") == "ERROR"
        if expected is None or not (matches or unreadable):
            raise self._fail(
                ConnectionBroken("the server answered out of order; the connection was closed")
            )
        self._pending.popleft()
        return Answer(expected[0], expected[1], frame)

    def _fail(self, error: LocalError | MMTPError) -> LocalError | MMTPError:
        self.close()
        self._lines.clear()
        self._pending.clear()
        self._failure = error
        return error
