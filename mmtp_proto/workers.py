"""`mmtp-server --workers N`: a supervisor and N single-threaded server processes.

Each worker is a whole `mmtp-server` (its own loop, connections, store connection and group
commit) listening on the same ports with SO_REUSEPORT, so the kernel spreads connections
over them. The supervisor holds the ports (bound, not listening: port 0 becomes one fixed
port for all), makes the TLS certificate once, starts the workers, writes the ready file
when all listen, restarts a worker that dies and stops them all on SIGTERM or SIGINT.

Rate limits (failed attempts per address) and connection caps are per worker. Everything
the store decides (stamps, duplicates, keys) holds across workers: see `storage`.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from .config import ServerConfig
from .errors import LocalError
from .listeners import write_ready_file

log = logging.getLogger("mmtp.workers")

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
# A worker that dies sooner than this after its start is restarted only after a pause, so a
# worker that cannot start does not spin.
QUICK_DEATH = 5.0


def _reserve(host: str, port: int) -> socket.socket:
    """Bind (not listen) with SO_REUSEPORT: holds the port number for the workers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise LocalError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


class Supervisor:
    def __init__(self, config: ServerConfig, argv: list[str]) -> None:
        if not hasattr(socket, "SO_REUSEPORT"):
            raise LocalError("--workers needs SO_REUSEPORT (Linux, BSD); run one worker here")
        self.config = config
        self.argv = argv
        self._stopping = False
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._started: dict[int, float] = {}
        self._dir = Path(tempfile.mkdtemp(prefix="mmtp-workers-"))

    def _command(self, index: int, ports: tuple[int, int]) -> list[str]:
        return [
            sys.executable,
            "-m",
            "mmtp_proto.server_cli",
            *self.argv,
            "--workers",
            "1",
            "--reuse-port",
            "--port",
            str(ports[0]),
            "--secure-port",
            str(ports[1]),
            "--ready-file",
            str(self._ready(index)),
        ]

    def _ready(self, index: int) -> Path:
        return self._dir / f"worker-{index}.json"

    def _spawn(self, index: int, ports: tuple[int, int]) -> None:
        self._ready(index).unlink(missing_ok=True)
        self._procs[index] = subprocess.Popen(self._command(index, ports), stdin=subprocess.DEVNULL)
        self._started[index] = time.monotonic()
        log.info("worker %d started (pid %d)", index, self._procs[index].pid)

    def _wait_ready(self, index: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not self._ready(index).exists():
            proc = self._procs[index]
            if proc.poll() is not None:
                raise LocalError(f"worker {index} exited with status {proc.returncode}")
            if time.monotonic() > deadline or self._stopping:
                raise LocalError(f"worker {index} did not start")
            time.sleep(0.05)

    def run(self) -> int:
        cfg = self.config
        held = []
        try:
            fingerprint = None
            if cfg.tls:
                # Once, before the workers: they would race to create a self-signed one.
                from .certs import ensure_certificate

                _, _, fingerprint = ensure_certificate(
                    Path(cfg.data_dir), cfg.domains, cfg.cert, cfg.key
                )
            plain_port, tls_port = cfg.port, cfg.secure_port
            if cfg.plain:
                held.append(_reserve(cfg.host, cfg.port))
                plain_port = held[-1].getsockname()[1]
            if cfg.tls:
                held.append(_reserve(cfg.host, cfg.secure_port))
                tls_port = held[-1].getsockname()[1]
            ports = (plain_port, tls_port)
            previous = {
                sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
            }
            try:
                for index in range(cfg.workers):
                    self._spawn(index, ports)
                for index in range(cfg.workers):
                    self._wait_ready(index)
                log.info("%d workers listening", cfg.workers)
                if cfg.ready_file is not None:
                    write_ready_file(
                        cfg.ready_file,
                        plain=(cfg.host, plain_port) if cfg.plain else None,
                        tls=(cfg.host, tls_port) if cfg.tls else None,
                        fingerprint=fingerprint,
                    )
                self._watch(ports)
            finally:
                self._stop_all()
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        finally:
            for sock in held:
                sock.close()
            with contextlib.suppress(OSError):
                for path in self._dir.iterdir():
                    path.unlink()
                self._dir.rmdir()
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("%s received: stopping the workers", signal.Signals(signum).name)
        self._stopping = True

    def _watch(self, ports: tuple[int, int]) -> None:
        while not self._stopping:
            time.sleep(0.2)
            for index, proc in list(self._procs.items()):
                if proc.poll() is None or self._stopping:
                    continue
                # A Ctrl-C reaches the workers too: let our own handler see it first.
                time.sleep(0.3)
                if self._stopping:
                    return
                log.error("worker %d (pid %d) exited with status %s", index, proc.pid, proc.poll())
                if time.monotonic() - self._started[index] < QUICK_DEATH:
                    time.sleep(QUICK_DEATH)
                if not self._stopping:
                    self._spawn(index, ports)

    def _stop_all(self) -> None:
        for proc in self._procs.values():
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in self._procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop in time: killing it", proc.pid)
                proc.kill()
                proc.wait()
        log.info("all workers stopped")
