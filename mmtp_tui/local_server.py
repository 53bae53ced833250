""" "Run a local server for me": `mmtp-server` on loopback as a child process.

Its data (mail store, self-signed certificate) lives under the user's data dir. It prefers
the ports it used last (8025/8026 at first) and falls back to free ones; it is ready when
it writes its ready file (`--ready-file`: where it listens and the certificate fingerprint,
which we pin ourselves: we started it, so trust on first use is not needed). Plain module:
no Textual.

`server.json` records where it listens, its pid and the pid of the mmtp-tui that owns it.
A server still running from an mmtp-tui that was killed (its owner is gone) is reused and
adopted: the next clean quit stops it. One whose owner still runs (a second mmtp-tui of the
same user) is shared and left to its owner.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mmtp_proto.errors import LocalError
from mmtp_proto.limits import DEFAULT_DIFFICULTY

from .config import data_dir


def default_dir() -> Path:
    return data_dir() / "local-server"


@dataclass
class LocalServerInfo:
    host: str
    port: int
    secure_port: int
    fingerprint: str
    pid: int
    owner: int = 0  # the mmtp-tui process that stops it on a clean quit


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


def _is_our_server(pid: int) -> bool:
    """Is `pid` an mmtp-server (so a recycled pid is never signalled)? Without /proc: yes."""
    if not Path("/proc/self").exists():
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"mmtp_proto.server_cli" in cmdline or b"mmtp-server" in cmdline


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    with contextlib.suppress(OSError, IndexError):  # a zombie has exited already
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
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
        self.adopted = False  # reused from an mmtp-tui that is gone: ours to stop now
        self._reader: threading.Thread | None = None

    @property
    def state_path(self) -> Path:
        return self.directory / "server.json"

    @property
    def ready_path(self) -> Path:
        return self.directory / "ready.json"

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
            if existing.owner != os.getpid() and not _alive(existing.owner):
                self.adopted = True
                existing.owner = os.getpid()
                self._write_state(existing)
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
            "--ready-file",
            str(self.ready_path),
        ]
        for domain in self.domains:
            command += ["--domain", domain]
        with contextlib.suppress(FileNotFoundError):
            self.ready_path.unlink()  # left by an earlier server: not this one's
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
        process = self.process

        def read() -> None:
            assert process.stderr is not None
            with process.stderr, open(self.directory / "server.log", "a", encoding="utf-8") as out:
                for line in process.stderr:
                    out.write(line)
                    out.flush()
                    self.log_lines.append(line.rstrip())
                    del self.log_lines[:-50]

        self._reader = threading.Thread(target=read, name="mmtp-local-server-log", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while (ready := self._read_ready_file()) is None:
            if process.poll() is not None:
                self._reader.join(2)  # so its last words are in log_lines
                self.stop()
                last = self.log_lines[-1] if self.log_lines else "no output"
                raise LocalError(f"the local server did not start: {last}")
            if time.monotonic() > deadline:
                self.stop()
                raise LocalError(
                    "the local server did not start in time; see its log in "
                    f"{self.directory / 'server.log'}"
                )
            time.sleep(0.05)
        if not (ready.get("plain") and ready.get("tls") and ready.get("fingerprint")):
            self.stop()
            raise LocalError(f"the local server did not report its listeners: {ready}")
        host, port = ready["plain"]
        _, secure_port = ready["tls"]
        self.info = LocalServerInfo(
            host=str(host),
            port=int(port),
            secure_port=int(secure_port),
            fingerprint=str(ready["fingerprint"]),
            pid=process.pid,
            owner=os.getpid(),
        )
        self._write_state(self.info)
        return self.info

    def _read_ready_file(self) -> dict | None:
        """What the server wrote once listening, or None while it has not (it is renamed
        into place whole, so a file that exists is complete)."""
        try:
            value = json.loads(self.ready_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def running(self) -> bool:
        """Is the server this object knows still running? Polling our own child also reaps
        it when it has died (no `<defunct>` process left behind)."""
        if self.process is not None:
            return self.process.poll() is None
        return self.info is not None and _alive(self.info.pid)

    def restart_if_dead(self, timeout: float = 20.0) -> LocalServerInfo | None:
        """Blocking: start the server again if it died, on the same ports when they are
        free. Returns the new info, or None when it was running."""
        if self.info is None or self.running():
            return None
        old = self.info
        self.stop()  # reaps the child, joins the log reader, forgets the state file
        self.info, self.adopted = None, False
        self.ports = (old.port, old.secure_port)
        return self.start(timeout)

    def _write_state(self, info: LocalServerInfo) -> None:
        self.state_path.write_text(json.dumps(info.__dict__), encoding="utf-8")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server if this object started or adopted it."""
        process, self.process = self.process, None
        if process is None:
            if self.adopted and self.info is not None:
                self.adopted = False
                self._stop_adopted(self.info.pid, timeout)
                self._forget_state()
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._reader is not None:
            self._reader.join(2)  # it closes the log pipe when the server has gone
        self._forget_state()

    @staticmethod
    def _stop_adopted(pid: int, timeout: float) -> None:
        if not (_alive(pid) and _is_our_server(pid)):
            return
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            # SIGKILL is not instant either: stop() returns once the server is gone.
            deadline = time.monotonic() + 5.0
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)

    def _forget_state(self) -> None:
        with contextlib.suppress(OSError, ValueError, KeyError):
            if self.info is not None and json.loads(self.state_path.read_text())["pid"] == (
                self.info.pid
            ):
                self.state_path.unlink()
