"""Federation found through DNS (SPEC §8.1): a real DNS server on loopback answers SRV and A
records; the servers find each other through it, with no static routes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnsd import TestDNS
from federation_helpers import ALICE, BOB, clients, inbox, relay_server, wait_for
from helpers import make_packet

from mmtp_proto.server import Server

client = pytest.fixture(clients)


@pytest.fixture
def dnsd() -> Iterator[TestDNS]:
    server = TestDNS().start()
    yield server
    server.stop()


@pytest.fixture
def servers(tmp_path: Path, dnsd: TestDNS) -> Iterator[tuple[Server, Server]]:
    made = [
        relay_server(tmp_path, d, dns_server=dnsd.address, allow_private_targets=True)
        for d in ("a.test", "b.test")
    ]
    for server in made:
        domain = server.config.domains[0]
        assert server.tls_address is not None
        # A dead first target (higher priority, nobody listening) must not hide the live one.
        dead = free_port()
        dnsd.add(f"_mmtp._tcp.{domain}", "SRV", (5, 0, dead, f"dead.{domain}"))
        dnsd.add(f"dead.{domain}", "A", "127.0.0.1")
        dnsd.add(f"_mmtp._tcp.{domain}", "SRV", (10, 0, server.tls_address[1], f"mx.{domain}"))
        dnsd.add(f"mx.{domain}", "A", "127.0.0.1")
        server.start()
    yield made[0], made[1]
    for server in made:
        with contextlib.suppress(Exception):
            server.stop()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_servers_find_each_other_through_srv_records(servers, client, dnsd):
    a, b = servers
    alice, bob = client(a, ALICE), client(b, BOB)
    outcomes = alice.send_mail(ALICE, [BOB], "Via DNS", "Found by SRV.")
    assert not isinstance(outcomes[BOB], Exception), outcomes[BOB]
    packet = wait_for(lambda: inbox(bob, BOB))[0]
    assert packet["meta"]["signatureVerified"] is True
    assert bob.open(packet).body == "Found by SRV."
    assert dnsd.queries[("_mmtp._tcp.b.test", "SRV")] >= 1
    assert dnsd.queries[("_mmtp._tcp.a.test", "SRV")] >= 1  # b.test fetched a.test's keys


def test_a_domain_with_the_dot_target_bounces_as_no_route(servers, client, dnsd):
    a, _b = servers
    dnsd.add("_mmtp._tcp.nomail.test", "SRV", (0, 0, 0, "."))
    alice = client(a, ALICE)
    nobody = "(x)%(nomail.test)"
    outcomes = alice.send_mail(ALICE, [nobody], "Hi", "Nobody.", encrypt=False)
    # POLICY already says so: the client does not even submit.
    assert getattr(outcomes[nobody], "code", None) == "NO_ROUTE"
    # Submitted anyway (a client that skips POLICY): queued, then a "failed" report.
    answer = alice.send(make_packet(ALICE, nobody))
    assert answer["queued"] is True
    report = wait_for(lambda: [m for m in inbox(alice, ALICE) if m["meta"]["type"] == "DSN"])
    dsn = report[0]["content"]["dsn"]
    assert (dsn["action"], dsn["code"], dsn["messageId"]) == (
        "failed",
        "NO_ROUTE",
        answer["messageId"],
    )


def test_lookups_for_clients_cache_failures_and_are_rate_limited(servers, dnsd):
    from helpers import Wire

    a, _b = servers
    with Wire(a) as wire:
        assert wire.error("POLICY", {"domain": "gone.test"}) == "NO_ROUTE"
        asked = dnsd.queries[("_mmtp._tcp.gone.test", "SRV")]
        # A failure is remembered for a minute: no second lookup.
        assert wire.error("POLICY", {"domain": "gone.test"}) == "NO_ROUTE"
        assert dnsd.queries[("_mmtp._tcp.gone.test", "SRV")] == asked
        codes = [wire.error("POLICY", {"domain": f"n{i}.test"}) for i in range(60)]
        assert codes[:59] == ["NO_ROUTE"] * 59
        assert codes[-1] == "RATE_LIMITED"
        # Local figures are never limited.
        assert wire.ok("POLICY", {"domain": "a.test"})["local"] is True
