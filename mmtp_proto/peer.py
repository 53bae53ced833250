"""One client connection as the server sees it, and how its answers become bytes."""

from __future__ import annotations

import logging
import socket
import time
from collections import deque
from typing import Any

from . import errors
from .errors import MMTPError
from .framing import NO_ID, FrameDecoder, encode_frame, with_id
from .protocol import Session

log = logging.getLogger("mmtp.server")


class Peer:
    """Buffers and state of one connection; the server loop moves its bytes."""

    __slots__ = (
        "addr",
        "closing",
        "decoder",
        "handshaking",
        "held",
        "last_active",
        "lines",
        "out",
        "peer",
        "rejecting",
        "session",
        "sock",
        "tls",
    )

    def __init__(self, sock: socket.socket, addr: tuple, tls: bool, max_frame: int) -> None:
        self.sock = sock
        self.addr = addr
        self.peer = str(addr[0])
        self.tls = tls
        self.handshaking = tls
        self.decoder = FrameDecoder(max_frame)
        self.lines: deque[bytes] = deque()
        self.out = bytearray()
        # Answers waiting for this turn's commit (see Server._process_lines).
        self.held: list[bytes] = []
        self.session = Session(peer=self.peer, tls=tls)
        self.last_active = time.monotonic()
        self.closing = False
        self.rejecting: str | None = None


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
