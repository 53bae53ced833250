""" "Run a local server for me": `mmtp-server` on loopback as a child process.

Its data (mail store, self-signed certificate) lives under the user's data dir. It prefers
the ports it used last (8025/8026 at first) and falls back to free ones; it is ready when
its log says it listens, and its log gives the certificate fingerprint, which we pin
ourselves: we started it, so trust on first use is not needed. Plain module: no Textual.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mmtp_proto.errors import LocalError

from .config import data_dir

DEFAULT_DIFFICULTY = 20
_LISTEN = re.compile(r"listening \((plain|TLS)\) on (\S+):(\d+)")
_FINGERPRINT = re.compile(r"fingerprint (\S+)")


def default_dir() -> Path:
    return data_dir() / "local-server"


@dataclass
class LocalServerInfo:
    host: str
    port: int
    secure_port: int
    fingerprint: str
    pid: int


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


class LocalServer:
    def __init__(
        self,
        directory: Path | None = None,
        *,
        difficulty: int = DEFAULT_DIFFICULTY,
        domains: tuple[str, ...] = ("localhost",),
        ports: tuple[int, int] = (8025, 8026),
    ) -> None:
        self.directory = directory or default_dir()
        self.difficulty = difficulty
        self.domains = domains
        self.ports = ports
        self.process: subprocess.Popen[str] | None = None
        self.info: LocalServerInfo | None = None
        self.log_lines: list[str] = []

    @property
    def state_path(self) -> Path:
        return self.directory / "server.json"

    def running_elsewhere(self) -> LocalServerInfo | None:
        """A local server another mmtp-tui of this user started and that still runs."""
        try:
            info = LocalServerInfo(**json.loads(self.state_path.read_text(encoding="utf-8")))
        except (FileNotFoundError, ValueError, TypeError):
            return None
        if _alive(info.pid) and _listening(info.host, info.secure_port):
            return info
        return None

    def start(self, timeout: float = 20.0) -> LocalServerInfo:
        """Start it (or reuse one already running); return where it listens."""
        existing = self.running_elsewhere()
        if existing is not None:
            self.info = existing
            return existing
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        plain, secure = self.ports
        if not (_port_free(plain) and _port_free(secure)):
            plain, secure = 0, 0
        command = [
            sys.executable,
            "-m",
            "mmtp_proto.server_cli",
            "--host",
            "127.0.0.1",
            "--port",
            str(plain),
            "--secure-port",
            str(secure),
            "--data-dir",
            str(self.directory / "data"),
            "--difficulty",
            str(self.difficulty),
            "--log-level",
            "INFO",
        ]
        for domain in self.domains:
            command += ["--domain", domain]
        log = open(self.directory / "server.log", "a", encoding="utf-8")  # noqa: SIM115
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # Ctrl+C in the terminal is the app's, not the server's
        )
        log.close()
        found: dict[str, object] = {}
        ready = threading.Event()

        def read() -> None:
            assert self.process is not None and self.process.stderr is not None
            with open(self.directory / "server.log", "a", encoding="utf-8") as out:
                for line in self.process.stderr:
                    out.write(line)
                    out.flush()
                    self.log_lines.append(line.rstrip())
                    del self.log_lines[:-50]
                    match = _LISTEN.search(line)
                    if match:
                        found[match.group(1)] = (match.group(2), int(match.group(3)))
                    match = _FINGERPRINT.search(line)
                    if match and "fingerprint" not in found:
                        found["fingerprint"] = match.group(1)
                    if {"plain", "TLS", "fingerprint"} <= found.keys():
                        ready.set()
            ready.set()

        threading.Thread(target=read, name="mmtp-local-server-log", daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if time.monotonic() > deadline:
                self.stop()
                raise LocalError(
                    "the local server did not start in time; see its log in "
                    f"{self.directory / 'server.log'}"
                )
        if not {"plain", "TLS", "fingerprint"} <= found.keys():
            self.stop()
            last = self.log_lines[-1] if self.log_lines else "no output"
            raise LocalError(f"the local server did not start: {last}")
        host, port = found["plain"]  # type: ignore[misc]
        _, secure_port = found["TLS"]  # type: ignore[misc]
        self.info = LocalServerInfo(
            host=str(host),
            port=int(port),
            secure_port=int(secure_port),
            fingerprint=str(found["fingerprint"]),
            pid=self.process.pid,
        )
        self.state_path.write_text(json.dumps(self.info.__dict__), encoding="utf-8")
        return self.info

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server if this object started it."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with contextlib.suppress(OSError):
            if self.info is not None and json.loads(self.state_path.read_text())["pid"] == (
                self.info.pid
            ):
                self.state_path.unlink()
