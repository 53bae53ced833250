"""A hostile "remote server" for federation tests: real TLS on 127.0.0.1 (a self-signed
certificate made by `certs`), a plausible MMTP greeting for its domain, then whatever the test's
`answer(request)` returns for each request line: bytes to send, or a callable that writes to the
socket itself (to trickle, or to stop answering)."""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmtp_proto.certs import ensure_certificate, server_ssl_context

Reply = bytes | Callable[[ssl.SSLSocket], None]


def frame(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode() + b"\n"


def ok(**fields: Any) -> bytes:
    return frame({"status": "OK", **fields})


def error(code: str, message: str) -> bytes:
    return frame(
        {"status": "ERROR", "error": {"code": code, "message": message}, "message": message}
    )


class HostileRemote:
    def __init__(
        self,
        tmp_path: Path,
        domain: str,
        answer: Callable[[dict[str, Any]], Reply],
        **greeting: Any,
    ) -> None:
        self.domain = domain
        self.greeting = greeting
        self.answer = answer
        cert, key, _fp = ensure_certificate(tmp_path / f"hostile-{domain}", [domain])
        self.context = server_ssl_context(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()[:2]
        self.requests: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        for sock in self._socks:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            self._socks.append(raw)
            thread = threading.Thread(target=self._serve, args=(raw,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, raw: socket.socket) -> None:
        try:
            sock = self.context.wrap_socket(raw, server_side=True)
            self._socks.append(sock)
            sock.sendall(
                frame(
                    {
                        "status": "OK",
                        "message": "MMTP Server Ready",
                        "protocol": "MMTP/1",
                        "server": "hostile/1",
                        "domains": [self.domain],
                        "difficulty": 8,
                        "maxFrameBytes": 1 << 20,
                        "stampValiditySeconds": 3600,
                        "nonce": secrets.token_hex(16),
                        "tls": True,
                        "features": {"relay": True},
                        "actions": ["SEND", "DOMAIN_AUTH", "DOMAIN_KEY", "REQUEST_PUBLIC_KEY"],
                        **self.greeting,
                    }
                )
            )
            buffer = b""
            while not self._stop.is_set():
                data = sock.recv(65536)
                if not data:
                    return
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    request = json.loads(line)
                    self.requests.append(request)
                    reply = self.answer(request)
                    if callable(reply):
                        reply(sock)
                    else:
                        if "id" in request:
                            value = json.loads(reply)
                            value["id"] = request["id"]
                            reply = frame(value)
                        sock.sendall(reply)
        except (OSError, ValueError):
            return
