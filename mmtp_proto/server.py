"""The MMTP server: one thread running `server_loop.ServerLoop` over its listeners.

This part opens the store, the TLS context and the listening sockets, writes the ready
file, starts and stops the loop (in this thread or a background one) and shuts down
cleanly. The loop moves bytes; `server_connection.ServerConnection` speaks the protocol.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .backends import describe, open_store
from .config import ServerConfig
from .errors import LocalError
from .listeners import make_private_dir, open_listener, raise_nofile_limit, write_ready_file
from .protocol import Protocol
from .server_loop import REJECT_SLACK, ServerLoop
from .storage import Storage, StoreError
from .worker_pool import WorkerPool

if TYPE_CHECKING:
    from .delivery_process import DeliveryProcess
    from .federation import Federation

log = logging.getLogger("mmtp.server")


class Server(ServerLoop):
    def __init__(self, config: ServerConfig, *, reuse_port: bool = False) -> None:
        super().__init__(config.validate())
        # A worker of `--workers N`: the listening ports are shared (SO_REUSEPORT).
        self.reuse_port = reuse_port
        self.plain_address: tuple[str, int] | None = None
        self.tls_address: tuple[str, int] | None = None
        self.tls_fingerprint: str | None = None
        self._listeners: list[socket.socket] = []
        self._thread: threading.Thread | None = None
        self._bound = False
        self._finished = threading.Event()
        # Federation (SPEC §8), when the config relays.
        self.federation: Federation | None = None
        self.delivery: DeliveryProcess | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def store(self) -> Storage:
        assert self._store is not None
        return self._store

    def bind(self) -> None:
        """Open the store and the listeners; errors come back as LocalError."""
        if self._bound:
            return
        cfg = self.config
        raise_nofile_limit(max(4096, cfg.max_connections + REJECT_SLACK + 64))
        data_dir = Path(cfg.data_dir)
        try:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise LocalError(f"cannot create the data directory {data_dir}: {exc}") from None
        make_private_dir(data_dir)
        try:
            self._store = open_store(cfg.database, data_dir, fsync=cfg.fsync)
        except StoreError as exc:
            raise LocalError(str(exc)) from None
        self._protocol = Protocol(cfg, self._store)
        # A request waiting for a future (a fetch) wakes the loop when it is done.
        self._protocol.wake = self.wake
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            # Before serving: OpenPGP work never runs on the loop thread (SPEC §7).
            self._pool = WorkerPool(
                cfg.pgp_workers,
                memory_limit=cfg.worker_memory_mib * 1024 * 1024,
                deadline=cfg.job_deadline_seconds,
            )
            try:
                self._pool.start()
            except OSError as exc:
                raise LocalError(f"cannot start the worker processes: {exc}") from None
            self._pool.attach(self._selector)
            if cfg.tls:
                from .certs import ensure_certificate, server_ssl_context

                cert, key, self.tls_fingerprint = ensure_certificate(
                    data_dir, cfg.domains, cfg.cert, cfg.key
                )
                self._ssl_context = server_ssl_context(cert, key)
            if cfg.relay:
                self._start_federation(data_dir, cert if cfg.tls else None)
            if cfg.plain:
                self.plain_address = self._listen(cfg.port, tls=False)
            if cfg.tls:
                self.tls_address = self._listen(cfg.secure_port, tls=True)
            if cfg.ready_file is not None:
                # Listening already: connections made from now on wait in the backlog.
                write_ready_file(
                    cfg.ready_file,
                    plain=self.plain_address,
                    tls=self.tls_address,
                    fingerprint=self.tls_fingerprint,
                )
        except BaseException:
            self._close_listeners()
            if self._pool is not None:
                self._pool.close()
            self._store.close()
            if self.federation is not None:
                self.federation.close()
            raise
        self._bound = True

    def _start_federation(self, data_dir: Path, cert: Path | None) -> None:
        from .delivery_process import DeliveryProcess
        from .federation import Federation

        if cert is None:
            raise LocalError("relay needs the TLS listener (relays never use plain TCP)")
        assert self._protocol is not None
        self.federation = Federation(self.config, cert_path=cert)
        self._protocol.federation = self.federation
        federation = self.federation
        # Delivery runs in a child process; it starts with the routes known when the loop
        # starts (tests add some after bind).
        self.delivery = DeliveryProcess(self.config, lambda: dict(federation.resolver.routes))
        self._protocol.on_relay_committed = self.delivery.kick

    def _listen(self, port: int, *, tls: bool) -> tuple[str, int]:
        sock = open_listener(self.config.host, port, reuse_port=self.reuse_port)
        assert self._selector is not None
        self._selector.register(sock, selectors.EVENT_READ, "tls" if tls else "plain")
        self._listeners.append(sock)
        address = sock.getsockname()
        return (str(address[0]), int(address[1]))

    def start(self) -> Server:
        """Bind, then run the loop in a background thread (for embedding and tests)."""
        self.bind()
        self._thread = threading.Thread(target=self._run, name="mmtp-server", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.bind()
        self._run()

    def request_stop(self) -> None:
        """Ask the loop to finish; safe to call from a signal handler or another thread."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def stop(self, timeout: float = 10.0) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
        elif self._bound:
            self._finished.wait(timeout)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _log_start(self) -> None:
        cfg = self.config
        if self.plain_address:
            log.info("listening (plain) on %s:%d", *self.plain_address)
        if self.tls_address:
            log.info("listening (TLS) on %s:%d", *self.tls_address)
            log.info("TLS certificate SHA-256 fingerprint %s", self.tls_fingerprint)
        log.info(
            "serving %s at difficulty %d bits; mail in %s",
            ", ".join(cfg.domains),
            cfg.difficulty,
            describe(cfg.database, Path(cfg.data_dir)),
        )

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        self._log_start()
        if self.delivery is not None:
            self.delivery.start()
        try:
            self._loop()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        log.info("stopping: finishing in-flight requests")
        for sock in self._listeners:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)  # type: ignore[union-attr]
        self._close_listeners()
        self._drain()
        if self.delivery is not None:
            self.delivery.stop()
        if self.federation is not None:
            self.federation.close()
        if self._pool is not None:
            self._pool.close()
        if self._store is not None:
            try:
                self._store.close()
            except StoreError as exc:
                log.error("closing the store failed: %s", exc)
        if self._selector is not None:
            self._selector.close()
        for s in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                s.close()
        self._finished.set()
        log.info("stopped")

    def _purge(self) -> None:
        store = self._store
        assert store is not None
        # Between turns: no answer rests on the open transaction, so a failure here
        # withdraws nothing.
        try:
            purged = store.purge_expired_stamps(int(time.time()))
            purged += store.purge_finished_jobs(int(time.time()))
            store.commit()
            if purged:
                log.info("purged %d expired stamps and finished relay jobs", purged)
        except StoreError as exc:
            store.rollback()
            log.warning("could not purge expired stamps: %s", exc)

    def wake(self) -> None:
        """Make the loop look around now; safe from any thread (a fetch that finished)."""
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _drain(self) -> None:
        """Answer what was received (jobs under way included), flush for a few seconds,
        then close every connection."""
        with contextlib.suppress(Exception):
            self._process_lines()
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if self._jobs:
                self._wait_for_jobs(0.01)
                with contextlib.suppress(Exception):
                    self._process_lines()
            elif not any(c.out for c in self._conns.values()):
                break
            else:
                time.sleep(0.01)
            for conn in list(self._conns.values()):
                if conn.out:
                    self._flush(conn)
        for conn in list(self._conns.values()):
            self._close(conn)

    def _close_listeners(self) -> None:
        for sock in self._listeners:
            with contextlib.suppress(OSError):
                sock.close()
        self._listeners.clear()
