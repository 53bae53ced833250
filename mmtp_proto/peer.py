"""The socket side of one connection: what the server loop keeps next to its protocol state."""

from __future__ import annotations

import socket
import time

from .admission import FrameProgress
from .server_connection import ServerConnection


class Peer:
    """A socket, its TLS handshake, its clock and its unsent bytes; `connection` does the rest."""

    __slots__ = (
        "accounted",
        "addr",
        "connection",
        "handshaking",
        "last_active",
        "out",
        "peer",
        "progress",
        "sock",
        "tls",
    )

    def __init__(
        self, sock: socket.socket, addr: tuple, tls: bool, connection: ServerConnection
    ) -> None:
        self.sock = sock
        self.addr = addr
        self.peer = str(addr[0])
        self.tls = tls
        self.handshaking = tls
        self.connection = connection
        # Bytes handed out by `connection` that the socket has not taken yet.
        self.out = bytearray()
        self.last_active = time.monotonic()
        # This connection's unfinished frame bytes as counted in the loop's budget total.
        self.accounted = 0
        self.progress = FrameProgress()

    @property
    def refused(self) -> bool:
        return self.connection.refused is not None

    def take_output(self) -> None:
        self.out += self.connection.data_to_send()
