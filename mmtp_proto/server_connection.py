"""One client connection as the server sees it, without sockets (h11's `Connection` shape).

Bytes in (`receive_data`), bytes out (`data_to_send`). In between, `process` answers the
complete requests received so far, in order, through `protocol.Protocol`; the answers wait
in `held` until the loop has committed the turn's writes (`Protocol.commit`), because an
answer must not promise what a failed commit could still take back. Every answer this
server sends is made here or in the protocol: the greeting, TOO_MANY_CONNECTIONS,
FRAME_TOO_LARGE, and the storage error that replaces a withdrawn answer.

A request a handler answers later (a `deferred.Pending`) holds this connection's later
requests until it is answered, so answers keep their order. It waits either for a job (OpenPGP
work: the loop takes it with `take_job`, runs it in a worker process and hands the result back
with `deliver`) or for a future (a fetch from another server: its callback wakes the loop
through `Protocol.wake`). Either way the next `process` after it is done finishes that request
(`Protocol.resume`) and goes on with the others.

The loop around it (`server.py`) only moves bytes, keeps time and decides admission.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from . import PROTOCOL, errors
from .actions.greeting import Features, Greeting
from .deferred import Job, JobResult, Pending, future_result
from .errors import MMTPError
from .framing import NO_ID, FrameDecoder, encode_frame, with_id
from .protocol import Protocol
from .session import Outcome, Session, storage_failure
from .storage import StoreError

log = logging.getLogger("mmtp.server")


class HeldAnswer:
    """One answer waiting for the turn's commit; a failed commit withdraws it, and a write
    found refused when it is settled (see `Outcome.settle`) changes it."""

    __slots__ = ("_action", "_peer", "_settle", "frame", "request_id")

    def __init__(
        self, frame: bytes, request_id: Any, outcome: Outcome | None = None, peer: str = ""
    ) -> None:
        self.frame = frame
        # NO_ID when the request had none; None is a real id (JSON null).
        self.request_id = request_id
        self._settle = outcome.settle if outcome is not None else None
        self._action = outcome.action if outcome is not None else "-"
        self._peer = peer

    def withdraw(self) -> None:
        self.frame = encode_frame(with_id(storage_failure().to_response(), self.request_id))

    def settle(self) -> None:
        settle, self._settle = self._settle, None
        if settle is None:
            return
        try:
            response = settle()
        except StoreError:
            raise  # the whole turn is withdrawn
        except Exception:
            log.exception("settling a %s answer failed", self._action)
            response = MMTPError(
                errors.INTERNAL, "the server failed on this request; try again later"
            ).to_response()
        if response is not None:
            log.info("%s %s now %s", self._peer, self._action, _status(response))
            self.frame = encode_answer(with_id(response, self.request_id))


class ServerConnection:
    """Protocol state of one connection: frames, session, answers, and whether to close."""

    def __init__(
        self, protocol: Protocol, *, peer: str, tls: bool, refused: str | None = None
    ) -> None:
        self._protocol = protocol
        self.peer = peer
        self.session = Session(peer=peer, tls=tls)
        self.decoder = FrameDecoder(protocol.config.max_frame_bytes)
        # Why this connection is refused ("on this server", "from your address"), if it is:
        # it is told so instead of greeted, then closed.
        self.refused = refused
        self._lines: deque[bytes] = deque()
        self._held: list[HeldAnswer] = []
        self._outgoing = bytearray()
        self._closing = False
        # The request answered later, the job the loop has not taken yet (when it waits for
        # one), and the job's result; the requests after it wait in `_lines`.
        self._pending: Pending | None = None
        self._job: Job | None = None
        self._result: JobResult | None = None
        # What the oversized-frame marker answers (see `shed` for the other cause).
        self._frame_error: MMTPError = self.decoder.error()
        # Every byte received, for the loop's minimum-rate rule (admission.FrameProgress).
        self.received = 0

    # ------------------------------------------------------------------ state

    @property
    def closing(self) -> bool:
        """No more requests are read: the peer closed its side, sent too much, or is refused."""
        return self._closing

    @property
    def finished(self) -> bool:
        """Closing, and every answer owed has been handed out: the socket can close."""
        return (
            self._closing
            and self._pending is None
            and not self._lines
            and not self._held
            and not self._outgoing
        )

    @property
    def pending_requests(self) -> int:
        """Requests received and not answered yet, besides one answered later."""
        return len(self._lines)

    @property
    def can_process(self) -> bool:
        """Would `process` do anything now? Not while a request waits for its job or fetch."""
        if self._pending is not None:
            return self._done()
        return bool(self._lines)

    @property
    def waiting(self) -> bool:
        """A request waits for a job or a fetch that has not finished yet."""
        return self._pending is not None and not self._done()

    def _done(self) -> bool:
        pending = self._pending
        assert pending is not None
        if pending.future is not None:
            return pending.future.done()
        return self._result is not None

    @property
    def receive_room(self) -> int:
        """How many bytes to read at most: the unfinished line held plus this read stays
        within maxFrameBytes + 1, the byte that proves a frame too large."""
        return self.decoder.max_frame_bytes + 1 - self.decoder.buffered

    @property
    def unfinished(self) -> int:
        """Bytes of the frame being received (after the last LF), held until its LF comes."""
        return self.decoder.buffered

    @property
    def queued_bytes(self) -> int:
        """Answers made and not yet handed out, held ones included."""
        return len(self._outgoing) + sum(len(answer.frame) for answer in self._held)

    # ------------------------------------------------------------------ events

    def start(self) -> None:
        """The transport is up (TCP accepted, TLS handshake done): greet, or refuse."""
        if self.refused:
            error = MMTPError(
                errors.TOO_MANY_CONNECTIONS,
                f"too many connections {self.refused}; close some and try again later",
            )
            self._outgoing += encode_frame(error.to_response())
            self._closing = True
        else:
            self._outgoing += encode_frame(self.greeting())

    def greeting(self) -> dict[str, Any]:
        config = self._protocol.config
        return Greeting(
            server=self._protocol.server_name,
            nonce=self.session.nonce,
            protocol=PROTOCOL,
            domains=sorted(self._protocol.domains),
            difficulty=config.difficulty,
            max_frame_bytes=config.max_frame_bytes,
            stamp_validity_seconds=config.stamp_validity_seconds,
            tls=self.session.tls,
            features=Features(
                plain_auth=config.allow_plain_auth,
                pipelining=True,
                registration=config.registration,
                relay=self._protocol.federation is not None,
            ),
            actions=list(self._protocol.actions),
        ).to_response()

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer; b"" means it closed its side (what it sent is still answered)."""
        if self._closing:
            return
        if not data:
            self._closing = True
            return
        self.received += len(data)
        self._lines.extend(self.decoder.feed(data))
        if self.decoder.broken:
            self._lines.append(b"")  # marks where the oversized frame stood
            self._closing = True
            log.info("%s sent a frame over %d bytes", self.peer, self.decoder.max_frame_bytes)

    def shed(self) -> None:
        """The server's budget for unfinished frames is spent and this frame is the one to
        give up: drop it, answer what came before it, then FRAME_TOO_LARGE, and close."""
        if self._closing:
            return
        # A fresh decoder frees the unfinished bytes; nothing more is fed once closing.
        self.decoder = FrameDecoder(self.decoder.max_frame_bytes)
        self._frame_error = MMTPError(
            errors.FRAME_TOO_LARGE,
            "the server holds too much unfinished data from its clients right now and gave up "
            "this frame; send it again later — the connection will now close",
        )
        self._lines.append(b"")
        self._closing = True
        log.info("%s: unfinished frame shed (server frame budget spent)", self.peer)

    def process(self, max_lines: int, room: int) -> None:
        """Answer up to `max_lines` requests while the queued answers stay under `room` bytes.

        Answers held for this turn's commit count against `room` too: otherwise one turn
        could queue many large answers (say, RECEIVEs of a full mailbox) for a client that
        never reads them. Nothing is answered while a request waits for its job or fetch.
        """
        protocol = self._protocol
        queued = self.queued_bytes
        if self._pending is not None:
            if not self._done():
                return
            pending, result = self._pending, self._result
            self._pending = self._result = None
            if pending.future is not None:
                result = future_result(pending.future)
            assert result is not None
            queued += self._take(protocol.resume(pending, result))
        while self._lines and max_lines and queued < room and self._pending is None:
            line = self._lines.popleft()
            if not line:  # the oversized-frame marker: answer it, then close
                error = self._frame_error.to_response()
                self._held.append(HeldAnswer(encode_frame(error), NO_ID))
                self._lines.clear()
                break
            max_lines -= 1
            queued += self._take(protocol.handle_line(self.session, line))

    def _take(self, outcome: Outcome | Pending) -> int:
        """Hold an answer (promised to the commit when durable), or start waiting (`Pending`):
        for a job the loop takes, or for a future whose end wakes the loop."""
        if isinstance(outcome, Pending):
            self._pending, self._job, self._result = outcome, outcome.job, None
            if outcome.future is not None:
                protocol = self._protocol
                # Runs on the fetching thread (or here, if it is done already).
                outcome.future.add_done_callback(lambda _f: protocol.wake())
            return 0
        self._log_outcome(outcome.action, outcome.response)
        answer = HeldAnswer(
            encode_answer(outcome.response), outcome.response.get("id", NO_ID), outcome, self.peer
        )
        if outcome.durable:
            settle = answer.settle if outcome.settle is not None else None
            self._protocol.commits.promise(answer, settle)
        self._held.append(answer)
        return len(answer.frame)

    def take_job(self) -> Job | None:
        """The job the waiting request needs run, once; the loop runs it off its thread."""
        job, self._job = self._job, None
        return job

    def deliver(self, result: JobResult) -> None:
        """The waiting request's job is done; the next `process` answers it."""
        if self._pending is not None and self._pending.job is not None:
            self._result = result

    def data_to_send(self) -> bytes:
        """The bytes to write now. Held answers are released once no write they may rest on
        is still uncommitted (the loop commits the turn first)."""
        if self._held and not self._protocol.commits.pending:
            for answer in self._held:
                self._outgoing += answer.frame
            self._held.clear()
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def _log_outcome(self, action: str, response: dict[str, Any]) -> None:
        log.info("%s %s %s", self.peer, action, _status(response))


def _status(response: dict[str, Any]) -> str:
    if response.get("status") == "OK":
        return "OK"
    return f"ERROR {response['error']['code']}"


def encode_answer(response: dict[str, Any]) -> bytes:
    try:
        return encode_frame(response)
    except (TypeError, ValueError):
        # The protocol layer only builds encodable answers; if one slips through, the client
        # still gets an answer in its place, and the loop goes on.
        log.exception("an answer could not be encoded")
        error = MMTPError(errors.INTERNAL, "the server could not encode its answer")
        try:
            return encode_frame(with_id(error.to_response(), response.get("id", NO_ID)))
        except (TypeError, ValueError):
            return encode_frame(error.to_response())
