"""The server's event loop: `selectors`, non-blocking sockets, TLS handshakes, timers and
admission (SPEC §7: connection caps, the unfinished-frame budget and minimum rate, counted
by `admission`). No protocol here: each connection's requests and answers are its
`server_connection.ServerConnection`'s; this only moves their bytes.

Every turn answers what the connections have buffered, then commits once (group commit,
`Protocol.commit`); the turn's answers leave only after that commit. OpenPGP work goes to
the worker pool (`server_jobs`); a request waiting for it holds only its own connection.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import ssl
import threading
import time

from . import log_limit
from .admission import Admission, over_budget
from .config import ServerConfig
from .peer import Peer
from .protocol import Protocol
from .server_connection import ServerConnection
from .server_jobs import ServerJobs
from .storage import Storage
from .worker_pool import PoolWorker

log = logging.getLogger("mmtp.server")

READ_CHUNK = 65536
LINES_PER_TURN = 64
# How many times one turn looks again (without waiting) for requests that can join its commit.
GATHER_ROUNDS = 4
PURGE_INTERVAL = 600.0
TICK = 1.0
# Connections over a cap are told why before they are closed; past this many extra
# sockets in that state we close at once rather than spend more on them.
REJECT_SLACK = 64


class ServerLoop(ServerJobs):
    """The loop state and its steps; `server.Server` opens the listeners and runs it."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._selector: selectors.BaseSelector | None = None
        self._ssl_context: ssl.SSLContext | None = None
        self._conns: dict[socket.socket, Peer] = {}
        # Admitted connections per address and network; connections being refused (over a
        # cap, told so before they are closed) count in no cap, only in self._rejecting.
        self._admission = Admission(
            total=config.max_connections,
            per_ip=config.max_connections_per_ip,
            per_network=config.max_connections_per_network,
        )
        self._rejecting = 0
        # Bytes of unfinished frames across all connections (each Peer.accounted summed).
        self._unfinished = 0
        self._pending: set[Peer] = set()
        # Connections whose next answer waits for a fetch from another server (SPEC §8.4).
        self._waiting: set[Peer] = set()
        self._store: Storage | None = None
        self._protocol: Protocol | None = None
        self._init_jobs()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    def _loop(self) -> None:
        assert self._selector is not None and self._protocol is not None
        next_tick = time.monotonic()
        next_purge = 0.0
        ready: set[Peer] = set()
        try:
            while not self._stop.is_set():
                # Connections given a job's result (in _pending) go on at once.
                wait = 0.0 if ready or self._pending else min(TICK, next_tick - time.monotonic())
                for key, mask in self._selector.select(self._job_timeout(max(0.0, wait))):
                    self._dispatch_safely(key, mask)
                self._pool_step()
                self._collect_fetched()
                ready = self._process_lines()
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + TICK
                    self._expire(now)
                    log_limit.flush_due()
                    if now >= next_purge:
                        next_purge = now + PURGE_INTERVAL
                        self._purge()
        except Exception:
            log.exception("the server loop failed")
            raise

    def _dispatch_safely(self, key: selectors.SelectorKey, mask: int) -> None:
        try:
            self._dispatch(key, mask)
        except Exception:
            # A bug met by one connection must not stop the server for everyone.
            log.exception("unexpected error on a connection; closing it")
            if isinstance(key.data, Peer):
                self._close(key.data)

    def _dispatch(self, key: selectors.SelectorKey, mask: int) -> None:
        tag = key.data
        if isinstance(tag, PoolWorker):
            self._pool_event(tag, mask)
        elif tag == "wake":
            with contextlib.suppress(OSError):
                self._wake_r.recv(4096)
        elif tag in ("plain", "tls"):
            self._accept(key.fileobj, tls=tag == "tls")  # type: ignore[arg-type]
        else:
            conn: Peer = tag
            if conn.handshaking:
                self._handshake(conn)
            else:
                if mask & selectors.EVENT_READ:
                    self._read(conn)
                if mask & selectors.EVENT_WRITE and conn.sock.fileno() >= 0:
                    self._flush(conn)

    def _accept(self, listener: socket.socket, *, tls: bool) -> None:
        for _ in range(64):
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # EMFILE and friends: leave the backlog for the next turn.
                log.warning("accept failed: %s", exc)
                return
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = str(addr[0])
            refused = self._admission.refusal(peer)
            if refused and self._rejecting >= REJECT_SLACK:
                sock.close()
                continue
            if tls:
                assert self._ssl_context is not None
                try:
                    sock = self._ssl_context.wrap_socket(
                        sock, server_side=True, do_handshake_on_connect=False
                    )
                except (OSError, ssl.SSLError):
                    sock.close()
                    continue
            assert self._protocol is not None
            state = ServerConnection(self._protocol, peer=peer, tls=tls, refused=refused)
            conn = Peer(sock, addr, tls, state)
            self._conns[sock] = conn
            assert self._selector is not None
            self._selector.register(sock, selectors.EVENT_READ, conn)
            if refused:
                self._rejecting += 1
                log.info("refusing %s: too many connections %s", peer, refused)
            else:
                self._admission.admit(peer)
                log.info("connection from %s:%s (%s)", peer, addr[1], "TLS" if tls else "plain")
            if not tls:
                self._greet(conn)

    def _greet(self, conn: Peer) -> None:
        conn.connection.start()
        conn.take_output()
        self._flush(conn)

    def _handshake(self, conn: Peer) -> None:
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket) and self._selector is not None
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._selector.modify(sock, selectors.EVENT_READ, conn)
            return
        except ssl.SSLWantWriteError:
            self._selector.modify(sock, selectors.EVENT_WRITE, conn)
            return
        except (ssl.SSLError, OSError) as exc:
            log.info("TLS handshake with %s failed: %s", conn.peer, exc)
            self._close(conn)
            return
        conn.handshaking = False
        conn.last_active = time.monotonic()
        self._greet(conn)

    def _read(self, conn: Peer) -> None:
        state = conn.connection
        if state.closing:
            return
        sock = conn.sock
        while True:
            try:
                # Never read past the frame limit (see ServerConnection.receive_room).
                data = sock.recv(min(READ_CHUNK, state.receive_room))
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                break
            except ssl.SSLWantWriteError:
                break
            except (OSError, ssl.SSLError):
                self._close(conn)
                return
            if not data:
                # The peer closed its side: answer what it sent, then close.
                state.receive_data(b"")
                break
            conn.last_active = time.monotonic()
            self._pending.add(conn)
            state.receive_data(data)
            if state.closing:
                break
            # TLS may hold decrypted bytes that select() cannot see.
            if not (conn.tls and sock.pending()):  # type: ignore[attr-defined]
                break
        self._account(conn)
        if self._unfinished > self.config.unfinished_frames_budget:
            self._shed()
        if state.finished and not conn.out and conn.sock in self._conns:
            self._close(conn)

    def _account(self, conn: Peer) -> None:
        """Bring the loop's total of unfinished frame bytes up to date for `conn`."""
        held = conn.connection.unfinished
        self._unfinished += held - conn.accounted
        conn.accounted = held

    def _shed(self) -> None:
        """Over the unfinished-frame budget: give up the largest unfinished frames until
        the rest fit (admission.over_budget); their connections are answered, then closed."""
        budget = self.config.unfinished_frames_budget
        partials = [(c, c.accounted) for c in self._conns.values() if c.accounted]
        for conn in over_budget(partials, budget):
            log.warning(
                "unfinished frames use over %d bytes: shedding %s's %d bytes",
                budget,
                conn.peer,
                conn.accounted,
            )
            conn.connection.shed()
            self._account(conn)
            self._pending.add(conn)
            self._update_interest(conn)

    def _process_lines(self) -> set[Peer]:
        """Answer buffered requests, commit once, then release the answers."""
        protocol = self._protocol
        assert protocol is not None
        touched: dict[Peer, None] = {}
        for round_ in range(GATHER_ROUNDS):
            batch = [c for c in self._pending if c.sock in self._conns]
            self._pending = set()
            if not batch:
                break
            touched.update(dict.fromkeys(batch))
            self._answer(batch)
            if round_ == GATHER_ROUNDS - 1 or not protocol.commits.pending:
                break
            # Requests that arrived while these were answered can share the commit: look
            # for them without waiting, so batches grow under load and latency does not.
            if not self._poll_now():
                break
        if not touched:
            return set()
        protocol.commit()
        high_water = self.config.output_high_water
        still_ready: set[Peer] = set()
        for conn in touched:
            conn.take_output()
            if conn.sock in self._conns:
                self._flush(conn)
                # Decided after the flush: a client that reads promptly has room again now
                # and its remaining pipelined requests must not wait for the next event.
                if (
                    conn.connection.can_process
                    and len(conn.out) < high_water
                    and conn.sock in self._conns
                ):
                    still_ready.add(conn)
        return still_ready

    def _poll_now(self) -> bool:
        assert self._selector is not None
        events = self._selector.select(0)
        for key, mask in events:
            self._dispatch_safely(key, mask)
        self._deliver()
        return bool(events)

    def _answer(self, batch: list[Peer]) -> None:
        """Handle up to LINES_PER_TURN requests of each connection; hold the answers."""
        high_water = self.config.output_high_water
        assert self._protocol is not None
        with self._protocol.round():
            for conn in batch:
                conn.connection.process(LINES_PER_TURN, high_water - len(conn.out))
                if self._submit_job(conn):
                    continue
                if conn.connection.waiting:
                    self._waiting.add(conn)
                elif conn.connection.can_process:
                    self._pending.add(conn)
            self._deliver()

    def _flush(self, conn: Peer) -> None:
        sock = conn.sock
        while conn.out:
            try:
                sent = sock.send(conn.out)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                break
            except ssl.SSLWantReadError:
                break
            except (OSError, ssl.SSLError):
                self._close(conn)
                return
            del conn.out[:sent]
        if not conn.out and conn.connection.finished:
            self._close(conn)
            return
        self._update_interest(conn)

    def _update_interest(self, conn: Peer) -> None:
        if conn.sock not in self._conns or conn.handshaking:
            return
        events = 0
        # Not read from while its answers pile up (a client that does not read), nor while
        # a turn's worth of its requests waits to be handled (a client that sends faster
        # than the server answers): either way the server would buffer without bound.
        reading = (
            not conn.connection.closing
            and len(conn.out) < self.config.output_high_water
            and conn.connection.pending_requests < LINES_PER_TURN
        )
        if reading:
            events |= selectors.EVENT_READ
        if conn.out:
            events |= selectors.EVENT_WRITE
        assert self._selector is not None
        if events == 0:
            # Nothing to wait for until the client drains its answers; keep the fd quiet.
            events = selectors.EVENT_WRITE
        key = self._selector.get_key(conn.sock)
        if key.events != events:
            self._selector.modify(conn.sock, events, conn)

    def _close(self, conn: Peer) -> None:
        if self._conns.pop(conn.sock, None) is None:
            return
        self._cancel_job(conn)
        assert self._selector is not None
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(conn.sock)
        with contextlib.suppress(OSError):
            conn.sock.close()
        self._unfinished -= conn.accounted
        conn.accounted = 0
        if conn.refused:
            self._rejecting -= 1
            return
        self._admission.release(conn.peer)
        log.info("closed %s:%s", conn.peer, conn.addr[1])

    def _expire(self, now: float) -> None:
        cfg = self.config
        for conn in list(self._conns.values()):
            limit = cfg.handshake_timeout if conn.handshaking else cfg.idle_timeout
            if conn.refused:
                limit = min(limit, cfg.handshake_timeout)
            if now - conn.last_active > limit:
                log.info(
                    "%s timed out (%s)", conn.peer, "handshake" if conn.handshaking else "idle"
                )
                self._close(conn)
            elif self._stalled(conn, now):
                log.info(
                    "%s: unfinished frame of %d bytes advances under %d bytes/s; closing",
                    conn.peer,
                    conn.accounted,
                    cfg.slow_frame_min_rate,
                )
                self._close(conn)
        assert self._protocol is not None
        self._protocol.prune_limits(time.time())
        if self._protocol.federation is not None:  # its per-IP lookup limits
            self._protocol.federation.lookups.prune(time.time())

    def _purge(self) -> None:
        """Housekeeping every PURGE_INTERVAL, between turns (`server.Server` does it)."""
