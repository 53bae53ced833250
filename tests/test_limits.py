"""Resource limits of SPEC §1 and §7 against a real server on loopback sockets.

Idle and handshake timeouts, per-address and total connection caps, bounded buffers for
clients that pipeline and never read, slow clients, the frame size limit, deep nesting, the
defaults (20 per address, 1,000 in total) and SO_REUSEADDR. Latency bounds are generous
("answered within 2 s"): they catch a stalled loop, not a slow machine.
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import threading
import time
from pathlib import Path

import pytest
from load_tools import (
    RECIPIENT,
    Closed,
    Sampler,
    ServerProcess,
    Wire,
    bloated_public_key,
    code_of,
    packet_for,
    receive_all,
    register,
    timed_send,
)

from mmtp_proto.config import ServerConfig
from mmtp_proto.framing import encode_frame
from mmtp_proto.limits import MAX_ARMOR_CHARS

PROMPT = 2.0  # "answered promptly" while an attack is under way


def _wait_closed_after(wire: Wire, timeout: float) -> float:
    """Seconds until the server closes `wire` (its frames, if any, are discarded)."""
    start = time.monotonic()
    wire.wait_closed(timeout)
    return time.monotonic() - start


def _open_until_accepted(address: tuple[str, int], *, tls: bool, timeout: float = 5.0) -> Wire:
    """A new connection once the server has noticed a slot was freed."""
    deadline = time.monotonic() + timeout
    while True:
        wire = Wire(address, tls=tls)
        if wire.greeting.get("status") == "OK":
            return wire
        wire.close()
        assert time.monotonic() < deadline, "the freed slot was never given back"
        time.sleep(0.05)


# ---------------------------------------------------------------------------- timeouts


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_idle_connection_is_closed_and_an_active_one_is_not(start_server, tls):
    server = start_server(idle_timeout=1.0)
    address = server.tls_address if tls else server.plain_address
    register(server.plain_address)
    with Wire(address, tls=tls) as idle, Wire(address, tls=tls) as active:
        start = time.monotonic()
        # The active client keeps talking for 2.5 s, well past the idle timeout.
        while time.monotonic() - start < 2.5:
            answer = active.request("REQUEST_PUBLIC_KEY", {"email": RECIPIENT})
            assert answer["status"] == "OK"
            time.sleep(0.3)
        # By now the idle one is gone (test_idle_timeout_lower_bound checks it is not early).
        assert idle.wait_closed(5.0) == []
        assert active.request("REQUEST_PUBLIC_KEY", {"email": RECIPIENT})["status"] == "OK"


def test_idle_timeout_lower_bound(start_server):
    server = start_server(idle_timeout=1.0)
    with Wire(server.plain_address) as wire:
        elapsed = _wait_closed_after(wire, 6.0)
    assert 0.9 <= elapsed <= 4.0, elapsed


def test_stalled_tls_handshakes_are_closed_while_others_are_served(start_server):
    server = start_server(handshake_timeout=1.0, idle_timeout=60.0)
    register(server.plain_address)
    silent = socket.create_connection(server.tls_address, timeout=10)
    partial = socket.create_connection(server.tls_address, timeout=10)
    try:
        started = time.monotonic()
        partial.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, then nothing
        # Meanwhile a normal TLS client is served at once.
        t0 = time.monotonic()
        with Wire(server.tls_address, tls=True) as other:
            answer = other.request("REQUEST_PUBLIC_KEY", {"email": RECIPIENT})
        assert answer["status"] == "OK"
        latency = time.monotonic() - t0
        print(f"stalled handshakes: another TLS client served in {latency * 1000:.1f} ms")
        assert latency < PROMPT
        for sock in (silent, partial):
            sock.settimeout(6.0)
            try:
                data = sock.recv(4096)
            except ConnectionResetError:
                data = b""
            assert data == b""  # closed, nothing sent (no greeting before the handshake)
        elapsed = time.monotonic() - started
        assert 0.9 <= elapsed <= 5.0, elapsed
    finally:
        silent.close()
        partial.close()


# ---------------------------------------------------------------------------- caps


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_per_address_cap(start_server, tls):
    server = start_server(max_connections_per_ip=3)
    address = server.tls_address if tls else server.plain_address
    wires = [Wire(address, tls=tls) for _ in range(3)]
    try:
        assert all(w.greeting["status"] == "OK" for w in wires)
        with Wire(address, tls=tls, greet=False) as fourth:
            frames = fourth.wait_closed(5.0)
        assert len(frames) == 1, frames
        assert code_of(frames[0]) == "TOO_MANY_CONNECTIONS"
        assert "address" in frames[0]["error"]["message"]
        # The three admitted connections still work.
        for wire in wires:
            assert code_of(wire.request("CHECK", {"email": RECIPIENT})) == "AUTH_REQUIRED"
        # Once one closes, a new one is admitted.
        wires.pop().close()
        wires.append(_open_until_accepted(address, tls=tls))
        with Wire(address, tls=tls, greet=False) as again:
            assert code_of(again.wait_closed(5.0)[0]) == "TOO_MANY_CONNECTIONS"
    finally:
        for wire in wires:
            wire.close()


def test_total_cap(start_server):
    server = start_server(max_connections=4, max_connections_per_ip=100)
    wires = [Wire(server.plain_address) for _ in range(2)]
    wires += [Wire(server.tls_address, tls=True) for _ in range(2)]
    try:
        assert all(w.greeting["status"] == "OK" for w in wires)
        for address, tls in ((server.plain_address, False), (server.tls_address, True)):
            with Wire(address, tls=tls, greet=False) as extra:
                frames = extra.wait_closed(5.0)
            assert [code_of(f) for f in frames] == ["TOO_MANY_CONNECTIONS"]
            assert "server" in frames[0]["error"]["message"]
        wires.pop(0).close()
        wires.append(_open_until_accepted(server.plain_address, tls=False))
    finally:
        for wire in wires:
            wire.close()


def test_one_address_over_its_cap_cannot_fill_the_server(start_server):
    """Connections refused for being over the per-address cap must not use up the total.

    127.0.0.1 holds its 3 admitted connections and opens 40 more TLS connections that never
    finish the handshake (each waits to be told TOO_MANY_CONNECTIONS); a client from
    127.0.0.2 is still admitted at once.
    """
    server = start_server(max_connections=10, max_connections_per_ip=3, handshake_timeout=5.0)
    register(server.plain_address)
    admitted = [Wire(server.plain_address) for _ in range(3)]
    stalled: list[socket.socket] = []
    try:
        for _ in range(40):
            stalled.append(socket.create_connection(server.tls_address, timeout=10))
        time.sleep(0.3)  # let the server accept them all
        other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        other.bind(("127.0.0.2", 0))
        other.settimeout(10)
        other.connect(server.plain_address)
        with other, other.makefile("rb") as reader:
            greeting = json.loads(reader.readline())
        assert greeting["status"] == "OK", greeting
    finally:
        for wire in admitted:
            wire.close()
        for sock in stalled:
            sock.close()


def test_defaults_allow_20_per_address_and_1000_in_total():
    defaults = ServerConfig()
    assert defaults.max_connections_per_ip >= 20
    assert defaults.max_connections >= 1000


def test_default_server_takes_20_connections_from_one_address(start_server):
    server = start_server()
    register(server.plain_address)
    wires: list[Wire] = []
    try:
        wires += [Wire(server.plain_address) for _ in range(16)]
        wires += [Wire(server.tls_address, tls=True) for _ in range(4)]
        assert all(w.greeting["status"] == "OK" for w in wires)
        for wire in wires:
            answer = wire.request("REQUEST_PUBLIC_KEY", {"email": RECIPIENT})
            assert answer["status"] == "OK"
    finally:
        for wire in wires:
            wire.close()


@pytest.mark.slow
def test_default_server_takes_1000_connections(start_server):
    """1,000 plain connections from 40 loopback addresses (25 each, under the per-IP cap),
    each in its own /24 (so under the per-network cap too: 127.0.0.0/8 is all loopback)."""
    server = start_server()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == resource.RLIM_INFINITY or soft >= min(hard, server.config.max_connections)
    register(server.plain_address)
    socks: list[socket.socket] = []
    try:
        for i in range(1000):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.settimeout(10)
            sock.bind((f"127.0.{i % 40}.2", 0))
            sock.connect(server.plain_address)
        greeted = 0
        for sock in socks:
            with sock.makefile("rb") as reader:
                greeted += json.loads(reader.readline())["status"] == "OK"
        assert greeted == 1000
        # With all of them open, a normal client is still admitted and served.
        latency = timed_send(server.plain_address)
        print(f"1,000 connections open: a new client's SEND took {latency * 1000:.1f} ms")
        assert latency < PROMPT
    finally:
        for sock in socks:
            sock.close()


# ---------------------------------------------------------------------------- buffers


@pytest.fixture
def spawn(tmp_path: Path):
    started: list[ServerProcess] = []

    def spawn() -> ServerProcess:
        server = ServerProcess(tmp_path / "data", tmp_path / "logs")
        started.append(server)
        return server.start()

    yield spawn
    for server in started:
        server.kill()


@pytest.mark.slow
def test_pipelining_non_reader_is_bounded_and_does_not_stall_others(spawn, record_property):
    """Two clients pipeline 1,500 RECEIVEs of a ~1 MB mailbox each and never read.

    Each answer is about the output high-water mark, so the server may hold about one or two
    of them per client; it must not read (or answer) the rest until the client drains.
    """
    server = spawn()
    register(server.plain)
    body = "x" * 10_000
    with Wire(server.plain) as filler:
        for _ in range(100):
            filler.send_request("SEND", {"packet": packet_for(body=body)})
        answers = [filler.read() for _ in range(100)]
    assert all(a["status"] == "OK" for a in answers)
    assert len(receive_all(server.tls)) == 100  # warms the server up as a reader would
    baseline = server.rss_kb()
    idle_latency = timed_send(server.plain)

    requests = b"".join(
        encode_frame({"action": "RECEIVE", "id": i, "data": {"email": RECIPIENT}})
        for i in range(1500)
    )
    attackers = [Wire(server.tls, tls=True) for _ in range(2)]
    senders: list[threading.Thread] = []
    try:
        for wire in attackers:
            assert wire.auth(RECIPIENT)["status"] == "OK"
            senders.append(wire.send_in_background(requests))
        with Sampler(lambda: timed_send(server.plain), interval=0.2) as sampler:
            time.sleep(3.0)
        peak = server.peak_rss_kb()
        assert not sampler.errors, sampler.errors
        assert len(sampler.results) >= 5
        worst = max(sampler.results)
        growth_mb = (peak - baseline) / 1024
        record_property("idle_send_latency_s", round(idle_latency, 4))
        record_property("worst_send_latency_under_attack_s", round(worst, 4))
        record_property("rss_baseline_mb", round(baseline / 1024, 1))
        record_property("rss_peak_mb", round(peak / 1024, 1))
        print(
            f"non-reader: idle SEND {idle_latency * 1000:.1f} ms, worst under attack "
            f"{worst * 1000:.1f} ms; RSS {baseline / 1024:.1f} MB -> peak {peak / 1024:.1f} MB"
        )
        assert worst < PROMPT
        # 2 clients x ~1 MB high water, plus answers in flight: far below 64 answers each.
        assert growth_mb < 40, f"server RSS grew by {growth_mb:.0f} MB"
        # The attacker's answers are intact and in order once it does read.
        first = [attackers[0].read(timeout=20) for _ in range(3)]
        assert [a["id"] for a in first] == [0, 1, 2]
        assert all(a["count"] == 100 for a in first)
    finally:
        for wire in attackers:
            wire.close()
        for sender in senders:
            sender.join(10)


@pytest.mark.slow
def test_flood_of_small_requests_is_bounded_and_does_not_stall_others(spawn, record_property):
    """A client that floods tiny requests and reads its answers: the server reads it only
    as fast as it answers, so its memory stays flat and other clients are served."""
    server = spawn()
    register(server.plain)
    baseline = server.rss_kb()
    chunk = b"{}\n" * 20_000  # each line is answered BAD_REQUEST
    answered = 0
    with Wire(server.plain) as flooder:
        stop = threading.Event()

        def read_answers() -> None:
            nonlocal answered
            with contextlib.suppress(OSError):
                while data := flooder.sock.recv(1 << 20):
                    answered += data.count(b"\n")

        def flood() -> None:
            with contextlib.suppress(OSError):
                while not stop.is_set():
                    flooder.sock.sendall(chunk)

        flooder.sock.settimeout(None)
        threads = [threading.Thread(target=f, daemon=True) for f in (read_answers, flood)]
        for thread in threads:
            thread.start()
        try:
            with Sampler(lambda: timed_send(server.plain), interval=0.2) as sampler:
                time.sleep(3.0)
            peak = server.peak_rss_kb()
        finally:
            stop.set()
            flooder.sock.shutdown(socket.SHUT_RDWR)
            for thread in threads:
                thread.join(10)
    assert not sampler.errors, sampler.errors
    worst = max(sampler.results)
    growth_mb = (peak - baseline) / 1024
    record_property("worst_send_latency_under_flood_s", round(worst, 4))
    record_property("rss_growth_mb", round(growth_mb, 1))
    print(
        f"flood: {answered} answers read; worst other SEND {worst * 1000:.1f} ms; RSS "
        f"{baseline / 1024:.1f} MB -> peak {peak / 1024:.1f} MB"
    )
    assert worst < PROMPT
    assert answered > 1000
    assert growth_mb < 40, f"server RSS grew by {growth_mb:.0f} MB"


def test_backpressure_keeps_every_answer_in_order(start_server):
    """5,000 pipelined requests against a 16 KiB high-water mark: all answered, in order."""
    server = start_server(output_high_water=16 * 1024)
    register(server.plain_address)
    request_count = 5000
    requests = b"".join(
        encode_frame({"action": "REQUEST_PUBLIC_KEY", "id": i, "data": {"email": RECIPIENT}})
        for i in range(request_count)
    )
    with Wire(server.plain_address) as wire:
        sender = wire.send_in_background(requests)
        time.sleep(0.5)  # not reading yet: the server has to stop and wait
        assert timed_send(server.plain_address) < PROMPT
        ids = []
        for _ in range(request_count):
            answer = wire.read()
            assert answer["status"] == "OK"
            ids.append(answer["id"])
        sender.join(10)
    assert ids == list(range(request_count))


def test_one_byte_every_50ms_does_not_stall_others(start_server):
    server = start_server()
    register(server.plain_address)
    frame = encode_frame(
        {"action": "REQUEST_PUBLIC_KEY", "id": "slow", "data": {"email": RECIPIENT}}
    )
    answers: dict[str, dict] = {}
    problems: list[BaseException] = []

    def dribble(tls: bool) -> None:
        address = server.tls_address if tls else server.plain_address
        try:
            with Wire(address, tls=tls) as wire:
                for i in range(len(frame)):
                    wire.send_bytes(frame[i : i + 1])
                    time.sleep(0.05)
                answers["tls" if tls else "plain"] = wire.read()
        except BaseException as exc:
            problems.append(exc)

    slow = [threading.Thread(target=dribble, args=(tls,)) for tls in (False, True)]
    with Sampler(lambda: timed_send(server.plain_address), interval=0.2) as sampler:
        for thread in slow:
            thread.start()
        for thread in slow:
            thread.join(60)
    assert not problems, problems
    assert not sampler.errors, sampler.errors
    assert len(sampler.results) >= 10
    worst = max(sampler.results)
    print(f"1 byte / 50 ms clients: {len(sampler.results)} SENDs, worst {worst * 1000:.1f} ms")
    assert worst < PROMPT
    for answer in answers.values():
        assert answer["status"] == "OK" and answer["id"] == "slow"
    assert set(answers) == {"plain", "tls"}


def test_register_key_with_a_bloated_key_does_not_stall_others(start_server, record_property):
    """A valid key whose user id is repeated to fill the server's whole armor limit.

    Parsing and checking such a key with PGPy on the loop thread held every client for
    seconds (700 copies: 1.9 s); it must be refused or handled without a stall.
    """
    server = start_server()
    register(server.plain_address)
    email = "(bloat)%(example.com)"
    armored = bloated_public_key(email, MAX_ARMOR_CHARS)
    with Sampler(lambda: timed_send(server.plain_address), interval=0.1) as sampler:
        time.sleep(0.3)
        started = time.monotonic()
        with Wire(server.plain_address, timeout=120) as wire:
            answer = wire.request("REGISTER_KEY", {"email": email, "publicKey": armored})
        handled = time.monotonic() - started
        time.sleep(0.3)
    assert not sampler.errors, sampler.errors
    worst = max(sampler.results)
    record_property("register_bloated_key_s", round(handled, 3))
    record_property("worst_send_latency_s", round(worst, 3))
    print(f"bloated key: {code_of(answer)} after {handled:.2f} s; worst other SEND {worst:.2f} s")
    assert code_of(answer) in {"OK", "KEY_INVALID"}
    assert worst < 0.5  # a stall, not a slow machine: the normal SEND takes milliseconds


# ---------------------------------------------------------------------------- frames


def _frame_of_size(size: int, request_id: int = 1) -> bytes:
    """A JSON request (unknown action) of exactly `size` bytes before its LF."""
    shell = json.dumps({"action": "PING", "id": request_id, "data": {"pad": ""}})
    pad = size - len(shell.encode())
    assert pad >= 0
    frame = json.dumps({"action": "PING", "id": request_id, "data": {"pad": "a" * pad}}).encode()
    assert len(frame) == size
    return frame + b"\n"


@pytest.mark.parametrize("size", [4095, 4096])
def test_frame_at_or_under_the_limit_is_read(start_server, size):
    server = start_server(max_frame_bytes=4096)
    with Wire(server.plain_address) as wire:
        assert wire.greeting["maxFrameBytes"] == 4096
        wire.send_bytes(_frame_of_size(size))
        assert code_of(wire.read()) == "UNKNOWN_ACTION"
        assert code_of(wire.request("CHECK", {"email": RECIPIENT})) == "AUTH_REQUIRED"


def test_send_of_exactly_max_frame_bytes_is_stored(start_server):
    server = start_server(max_frame_bytes=4096)
    register(server.plain_address)
    body = ""
    for _ in range(20):
        packet = packet_for(body=body)
        frame = encode_frame({"action": "SEND", "id": 1, "data": {"packet": packet}})
        missing = 4097 - len(frame)  # frame includes its LF
        if missing == 0:
            break
        body = body + "b" * missing if missing > 0 else body[:missing]
    assert len(frame) == 4097
    with Wire(server.plain_address) as wire:
        wire.send_bytes(frame)
        answer = wire.read()
    assert answer["status"] == "OK", answer
    stored = receive_all(server.tls_address)
    assert [m["meta"]["messageId"] for m in stored] == [packet["meta"]["messageId"]]


def test_frame_over_the_limit_is_refused_then_closed(start_server):
    server = start_server(max_frame_bytes=4096)
    with Wire(server.plain_address) as wire:
        wire.send_bytes(_frame_of_size(4097))
        frames = wire.wait_closed(5.0)
    assert [code_of(f) for f in frames] == ["FRAME_TOO_LARGE"]
    # Other clients are unaffected.
    with Wire(server.plain_address) as other:
        assert code_of(other.request("CHECK", {"email": RECIPIENT})) == "AUTH_REQUIRED"


def test_endless_line_is_refused_without_buffering_it(start_server):
    server = start_server(max_frame_bytes=4096)
    with Wire(server.plain_address) as wire:
        wire.send_bytes(b"[" + b"1," * 1000)  # no LF yet, under the limit
        with contextlib.suppress(OSError):
            for _ in range(64):  # 64 KiB more, never an LF
                wire.send_bytes(b" " * 1024)
        frames = wire.wait_closed(5.0)
    assert [code_of(f) for f in frames] == ["FRAME_TOO_LARGE"]


def test_valid_requests_before_an_oversized_frame_are_answered(start_server):
    server = start_server(max_frame_bytes=4096)
    with Wire(server.plain_address) as wire:
        wire.send_bytes(_frame_of_size(100, 1) + _frame_of_size(200, 2) + _frame_of_size(5000, 3))
        frames = wire.wait_closed(5.0)
    assert [code_of(f) for f in frames] == ["UNKNOWN_ACTION", "UNKNOWN_ACTION", "FRAME_TOO_LARGE"]
    assert [f.get("id") for f in frames[:2]] == [1, 2]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "BAD_REQUEST"),
        (b"[" * 100_000, "BAD_JSON"),
        (
            b'{"action":"CHECK","id":1,"data":{"email":' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
            "BAD_REQUEST",
        ),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "BAD_REQUEST"),
    ],
    ids=["lists", "unclosed", "inside-data", "objects"],
)
def test_deep_nesting_is_refused_and_the_connection_stays_usable(start_server, frame, code):
    # SPEC §1 rev 2: deeper than 32 levels is BAD_REQUEST; a syntax error is BAD_JSON first.
    server = start_server()
    register(server.plain_address)
    with Wire(server.plain_address) as wire:
        t0 = time.monotonic()
        wire.send_bytes(frame + b"\n")
        answer = wire.read()
        assert code_of(answer) == code
        assert time.monotonic() - t0 < PROMPT
        answer = wire.request("REQUEST_PUBLIC_KEY", {"email": RECIPIENT})
        assert answer["status"] == "OK"


# ---------------------------------------------------------------------------- listeners


def test_listeners_reuse_address_for_an_immediate_restart(start_server, tmp_path):
    """Connections the server closed leave TIME_WAIT on its ports; a restart still binds."""
    first = start_server(data_dir=tmp_path / "reuse")
    ports = {"port": first.plain_address[1], "secure_port": first.tls_address[1]}
    wires = [Wire(first.plain_address), Wire(first.tls_address, tls=True)]
    try:
        first.stop()  # the server closes its side first: TIME_WAIT is on the server's ports
        for wire in wires:
            with contextlib.suppress(Closed, TimeoutError):
                wire.wait_closed(5.0)
    finally:
        for wire in wires:
            wire.close()
    second = start_server(data_dir=tmp_path / "reuse", **ports)
    assert second.plain_address[1] == ports["port"]
    assert second.tls_address[1] == ports["secure_port"]
    with Wire(second.plain_address) as wire:
        assert wire.greeting["status"] == "OK"
