"""A hostile remote server (SPEC §8, §10, §11): what its answers may do to the server that
talks to it. Real servers on 127.0.0.1 with real TLS; the remote is `hostile_remote`."""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnsd import TestDNS
from federation_helpers import ALICE, client_for, relay_server, wait_for
from helpers import Wire, key_for, make_packet
from hostile_remote import HostileRemote, error, ok

from mmtp_proto.domain_keys import DomainKeyring, cert_hash
from mmtp_proto.server import Server

EVIL = "evil.test"
FORGED = "INTERNAL\n2026-12-01 00:00:00 INFO relay: forged line"


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Server]:
    server = relay_server(tmp_path, "a.test")
    server.start()
    yield server
    with contextlib.suppress(Exception):
        server.stop()


def routed(home: Server, remote: HostileRemote) -> None:
    assert home.federation is not None
    home.federation.set_route(remote.domain, *remote.address)


def test_a_remote_error_code_is_not_passed_on_raw_to_clients_or_logs(home, tmp_path, caplog):
    """A remote's `error.code` is as untrusted as its message: a newline in it must not forge
    log lines, nor reach a client (or a DSN) as a code no client knows, nor be unbounded."""
    code = FORGED + "X" * 100_000
    remote = HostileRemote(tmp_path, EVIL, lambda _request: error(code, "no\r\nsuch\nkey"))
    try:
        routed(home, remote)
        caplog.set_level(logging.INFO, logger="mmtp.relay")
        with Wire(home) as wire:
            answer = wire.request("REQUEST_PUBLIC_KEY", {"email": f"(bob)%({EVIL})"})
        assert answer["status"] == "ERROR"
        said = answer["error"]["code"] + answer["error"]["message"]
        assert "\n" not in said and "\r" not in said
        assert len(answer["error"]["message"]) < 1000
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", answer["error"]["code"])
        for record in caplog.records:
            line = record.getMessage()
            assert "\n" not in line and "\r" not in line, line
            assert len(line) < 2000
    finally:
        remote.close()


def trickle(sock, stop_after: float = 60.0) -> None:
    """Bytes of an answer that never ends: one every 0.2 s (each recv succeeds, so no
    per-read timeout ever fires)."""
    deadline = time.monotonic() + stop_after
    sock.sendall(b'{"status":"OK",')
    while time.monotonic() < deadline:
        try:
            sock.sendall(b" ")
        except OSError:
            return
        time.sleep(0.2)


def test_a_trickling_remote_does_not_hold_a_lookup_past_the_relay_timeout(tmp_path):
    home = relay_server(tmp_path, "a.test", relay_timeout=2.0)
    home.start()
    remote = HostileRemote(tmp_path, EVIL, lambda _request: trickle)
    try:
        routed(home, remote)
        with Wire(home) as wire:
            started = time.monotonic()
            answer = wire.request("REQUEST_PUBLIC_KEY", {"email": f"(bob)%({EVIL})"})
            took = time.monotonic() - started
        assert answer["status"] == "ERROR"
        assert answer["error"]["code"] == "REMOTE_UNAVAILABLE"
        assert took < 10, took
    finally:
        remote.close()
        home.stop()


def test_an_endless_answer_is_not_buffered_past_what_a_relay_answer_can_be(tmp_path):
    """An answer line that never ends (megabytes, then silence) is given up once it is longer
    than any answer to a relay request can be, not after 256 MiB or the remote's silence."""

    def flood(sock) -> None:
        with contextlib.suppress(OSError):
            sock.sendall(b'{"status":"OK","publicKey":"' + b"A" * (3 << 20))
            time.sleep(30)

    home = relay_server(tmp_path, "a.test", relay_timeout=30.0, max_frame_bytes=65536)
    home.start()
    remote = HostileRemote(tmp_path, EVIL, lambda _request: flood)
    try:
        routed(home, remote)
        with Wire(home) as wire:
            started = time.monotonic()
            answer = wire.request("REQUEST_PUBLIC_KEY", {"email": f"(bob)%({EVIL})"})
            took = time.monotonic() - started
        assert answer["error"]["code"] == "REMOTE_UNAVAILABLE"
        assert took < 10, took
    finally:
        remote.close()
        home.stop()


def test_a_trickling_remote_does_not_hold_a_delivery_worker(tmp_path):
    """The remote takes DOMAIN_AUTH, then answers SEND a byte at a time, never finishing: the
    delivery gives up after relay_timeout and tries again later (a retry is a new SEND)."""
    sends: list[float] = []

    def answer(request):
        if request["action"] == "DOMAIN_AUTH":
            return ok(domain=request["data"]["domain"])
        sends.append(time.monotonic())
        return trickle

    remote = HostileRemote(tmp_path, EVIL, answer)
    # A route in the config: the delivery process builds its own from it.
    route = {EVIL: f"{remote.address[0]}:{remote.address[1]}"}
    home = relay_server(tmp_path, "a.test", relay_timeout=2.0, routes=route)
    home.start()
    try:
        alice = client_for(home, tmp_path, ALICE)
        try:
            bob = f"(bob)%({EVIL})"
            outcome = alice.send_mail(ALICE, [bob], "Hi", "Hello.", encrypt=False)[bob]
            assert not isinstance(outcome, Exception), outcome
            wait_for(lambda: len(sends) >= 2, timeout=20)
        finally:
            alice.disconnect()
    finally:
        remote.close()
        home.stop()


class SlowProxy:
    """Forwards to `upstream`, but the upstream's bytes come back one every `gap` s."""

    def __init__(self, upstream: tuple[str, int], gap: float = 0.05) -> None:
        self.upstream, self.gap = upstream, gap
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()[:2]
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, server, 0), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, 1), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, step: int) -> None:
        with contextlib.suppress(OSError):
            while not self.stop.is_set():
                data = src.recv(step or 65536)
                if not data:
                    return
                dst.sendall(data)
                if step:
                    time.sleep(self.gap)


def test_a_trickled_tls_handshake_is_bounded_by_the_relay_timeout(tmp_path):
    home = relay_server(tmp_path, "a.test", relay_timeout=2.0)
    home.start()
    remote = HostileRemote(tmp_path, EVIL, lambda _request: error("KEY_NOT_FOUND", "none"))
    proxy = SlowProxy(remote.address)
    try:
        assert home.federation is not None
        home.federation.set_route(EVIL, *proxy.address)
        with Wire(home) as wire:
            started = time.monotonic()
            answer = wire.request("REQUEST_PUBLIC_KEY", {"email": f"(bob)%({EVIL})"})
            took = time.monotonic() - started
        assert answer["error"]["code"] == "REMOTE_UNAVAILABLE"
        assert took < 10, took
    finally:
        proxy.close()
        remote.close()
        home.stop()


@pytest.mark.parametrize(
    ("difficulty", "validity"), [(-3, 10**12), (10**6, -5)], ids=["low", "absurd"]
)
def test_a_remotes_stamp_figures_are_clamped_before_use(home, tmp_path, difficulty, validity):
    """The remote's greeting figures feed POLICY (what clients mint) and the queue (how long a
    job is retried: until the stamp expires by the remote's validity). Negative bits would
    break every client's minter; a validity of 30,000 years would keep its jobs retried
    (and their spent stamps stored) for ever."""
    remote = HostileRemote(
        tmp_path,
        EVIL,
        lambda _request: error("KEY_NOT_FOUND", "none"),
        difficulty=difficulty,
        stampValiditySeconds=validity,
    )
    try:
        routed(home, remote)
        with Wire(home) as wire:
            answer = wire.request("POLICY", {"domain": EVIL})
        assert answer["status"] == "OK", answer
        assert 0 <= answer["difficulty"] <= 40
        assert 60 <= answer["stampValiditySeconds"] <= 5 * 86_400
    finally:
        remote.close()


def test_one_lookup_never_fans_out_to_every_target_a_domain_names(tmp_path):
    """A hostile domain's DNS may name hundreds of SRV targets, each with many addresses
    (a victim's). One DOMAIN_AUTH or POLICY must not make this server resolve and connect to
    all of them: that would make it an amplifier and a scanner, and hold a fetch thread for
    hours of connect timeouts."""
    dnsd = TestDNS().start()
    accepted: list[int] = []
    listeners = []
    try:
        for i in range(40):
            listener = socket.create_server(("127.0.0.1", 0))
            listeners.append(listener)

            def drop(listener: socket.socket = listener, i: int = i) -> None:
                with contextlib.suppress(OSError):
                    while True:
                        conn, _ = listener.accept()
                        accepted.append(i)
                        conn.close()

            threading.Thread(target=drop, daemon=True).start()
            port = listener.getsockname()[1]
            dnsd.add("_mmtp._tcp.wide.test", "SRV", (10, 1, port, f"mx{i}.wide.test"))
            dnsd.add(f"mx{i}.wide.test", "A", "127.0.0.1")
        home = relay_server(tmp_path, "a.test", dns_server=dnsd.address, allow_private_targets=True)
        home.start()
        try:
            with Wire(home) as wire:
                answer = wire.request("POLICY", {"domain": "wide.test"})
            assert answer["error"]["code"] == "REMOTE_UNAVAILABLE"
            asked = sum(n for (name, kind), n in dnsd.queries.items() if kind == "A")
            assert len(accepted) <= 10, len(accepted)
            assert asked <= 10, asked
        finally:
            home.stop()
    finally:
        for listener in listeners:
            listener.close()
        dnsd.stop()


def test_one_stamp_queues_one_message_even_pipelined(home, tmp_path):
    """SPEC §9: each recipient's packet carries its own stamp. Two packets for one remote
    recipient with the same content (so the same messageHash) under two messageIds may not
    share a stamp, not even pipelined into one turn of the loop."""
    import copy

    remote = HostileRemote(tmp_path, EVIL, lambda _request: error("RATE_LIMITED", "later"))
    try:
        routed(home, remote)
        bob = f"(bob)%({EVIL})"
        with Wire(home) as wire:
            wire.register(ALICE)
            wire.auth(ALICE, key_for(ALICE))
            first = make_packet(ALICE, bob)
            second = copy.deepcopy(first)
            second["meta"]["messageId"] = "f" * 32
            assert second["verification"]["messageHash"] == first["verification"]["messageHash"]
            ids = wire.send_batch([("SEND", {"packet": first}), ("SEND", {"packet": second})])
            answers = {}
            while len(answers) < 2:
                frame = wire.read(timeout=10)
                answers[frame["id"]] = frame
        assert answers[ids[0]]["status"] == "OK", answers
        assert answers[ids[1]]["status"] == "ERROR", answers
        assert answers[ids[1]]["error"]["code"] == "POW_REPLAYED"
    finally:
        remote.close()


def test_one_source_cannot_fill_every_fetch_thread_with_slow_lookups(tmp_path):
    """Each lookup of a trickling remote holds a fetch thread for relay_timeout. One source
    may have two waiting at once; more are RATE_LIMITED at once, so the other fetch threads
    stay free for other clients and for relays' DOMAIN_AUTH key fetches."""
    domains = [f"d{i}.evil.test" for i in range(8)]
    remote = HostileRemote(tmp_path, EVIL, lambda _request: trickle, domains=domains)
    home = relay_server(tmp_path, "a.test", relay_timeout=3.0)
    home.start()
    wires = [Wire(home) for _ in domains]
    try:
        assert home.federation is not None
        for domain in domains:
            home.federation.set_route(domain, *remote.address)
        for wire, domain in zip(wires, domains, strict=True):
            wire.send_request("REQUEST_PUBLIC_KEY", {"email": f"(bob)%({domain})"})
        time.sleep(1.5)  # well under relay_timeout: only refusals are in by now
        early, late = [], []
        for wire in wires:
            try:
                early.append(wire.read(timeout=0.2)["error"]["code"])
            except TimeoutError:
                late.append(wire)
        assert early == ["RATE_LIMITED"] * (len(domains) - 2), early
        for wire in late:
            assert wire.read(timeout=20)["error"]["code"] == "REMOTE_UNAVAILABLE"
    finally:
        for wire in wires:
            wire.close()
        home.stop()
        remote.close()


def test_a_relay_whose_key_server_trickles_holds_at_most_its_share_of_fetch_threads(tmp_path):
    """A domain-authenticated relay sends signed mail from many senders of its domain; each
    sender's key is fetched from that domain's server, which trickles. Those fetches may hold
    two fetch threads, not all of them: another client's lookup of a healthy domain is
    answered at once, not after relay_timeout."""
    keyring = DomainKeyring.load_or_create(tmp_path / "evil-keys")

    def answer(request):
        if request["action"] == "DOMAIN_KEY":
            return ok(**keyring.answer(EVIL))
        return trickle

    remote = HostileRemote(tmp_path, EVIL, answer)
    home = relay_server(tmp_path, "a.test", relay_timeout=4.0)
    healthy = relay_server(tmp_path, "c.test")
    healthy.start()
    home.start()
    try:
        assert home.federation is not None and healthy.tls_address is not None
        routed(home, remote)
        home.federation.set_route("c.test", *healthy.tls_address)
        with Wire(home) as reader:
            reader.register(ALICE)
        # One connection answers in order (a SEND waiting for a fetch holds the ones behind
        # it), so the relay opens one connection per sender.
        relays = [Wire(home) for _ in range(8)]
        try:
            for i, relay in enumerate(relays):
                der = relay.sock.getpeercert(binary_form=True)  # type: ignore[attr-defined]
                nonce = relay.greeting["nonce"]
                data = keyring.sign_auth("a.test", nonce, EVIL, cert_hash(der))
                assert relay.request("DOMAIN_AUTH", data)["status"] == "OK"
                packet = make_packet(f"(s{i})%({EVIL})", ALICE, sign=True)
                relay.send_request("SEND", {"packet": packet})
            time.sleep(0.5)  # the fetches are under way
            with Wire(home) as other:
                started = time.monotonic()
                assert other.request("POLICY", {"domain": "c.test"})["status"] == "OK"
                assert time.monotonic() - started < 2.0
        finally:
            for relay in relays:
                relay.close()
    finally:
        home.stop()
        healthy.stop()
        remote.close()
