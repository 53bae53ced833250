"""SPEC §8.1 routing against a real DNS server on 127.0.0.1 (tests/dnsd.py)."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from dnsd import TestDNS, dead_udp_port

from mmtp_proto.errors import LocalError, MMTPError
from mmtp_proto.routing import (
    DEFAULT_RELAY_PORT,
    MAX_SRV_TARGETS,
    NO_ROUTE,
    REMOTE_UNAVAILABLE,
    Resolver,
    Target,
    is_public_address,
    order_srv,
    parse_route,
    parse_routes,
)

PUBLIC_1 = "93.184.216.34"
TEST_NET_2 = "198.51.100.7"  # documentation range: not global, so not a relay target
PUBLIC_V6 = "2606:4700:4700::1111"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def dnsd() -> Iterator[TestDNS]:
    server = TestDNS().start()
    yield server
    server.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(dnsd: TestDNS, clock: Clock | None = None, **kw) -> Resolver:
    kw.setdefault("timeout", 2.0)
    return Resolver(dns_server=dnsd.address, clock=clock or time.monotonic, **kw)


def code_of(call) -> str:
    with pytest.raises(MMTPError) as info:
        call()
    return info.value.code


# --- static routes and option parsing --------------------------------------------------------


def test_parse_route() -> None:
    assert parse_route("B.Test=10.0.0.2:8026") == ("b.test", ("10.0.0.2", 8026))
    assert parse_route("b.test=[::1]:9000") == ("b.test", ("::1", 9000))
    assert parse_route("b.test=mx.b.test:1") == ("b.test", ("mx.b.test", 1))


@pytest.mark.parametrize(
    "text",
    [
        "b.test",
        "b.test=host",
        "b.test=host:0",
        "b.test=host:65536",
        "b.test=:80",
        "bad_dom=h:1",
        "=h:1",
        "b.test=host:x",
    ],
)
def test_parse_route_refuses(text: str) -> None:
    with pytest.raises(LocalError):
        parse_route(text)


def test_parse_routes_refuses_duplicates() -> None:
    assert parse_routes(["a.test=h:1", "b.test=h:2"]) == {"a.test": ("h", 1), "b.test": ("h", 2)}
    with pytest.raises(LocalError, match="two routes"):
        parse_routes(["a.test=h:1", "A.test=h:2"])


def test_static_route_wins_and_may_be_private() -> None:
    # The DNS server is dead: a static route must not even ask it.
    resolver = Resolver(
        {"B.test": ("127.0.0.1", 9999)}, dns_server=f"127.0.0.1:{dead_udp_port()}", timeout=0.3
    )
    assert resolver.resolve("b.TEST") == [Target("127.0.0.1", 9999, "static")]
    assert resolver.cached("b.test") == [Target("127.0.0.1", 9999, "static")]


def test_invalid_domain_is_no_route(dnsd: TestDNS) -> None:
    assert code_of(lambda: make(dnsd).resolve("not a domain")) == NO_ROUTE
    assert sum(dnsd.queries.values()) == 0


# --- SRV --------------------------------------------------------------------------------------


def test_srv_priority_order_and_addresses(dnsd: TestDNS) -> None:
    dnsd.add("_mmtp._tcp.b.test", "SRV", (20, 0, 9002, "backup.b.test"))
    dnsd.add("_mmtp._tcp.b.test", "SRV", (10, 0, 9001, "mx.b.test"))
    dnsd.add("mx.b.test", "A", PUBLIC_1)
    dnsd.add("mx.b.test", "AAAA", PUBLIC_V6)
    dnsd.add("backup.b.test", "A", PUBLIC_1)
    targets = make(dnsd).resolve("b.test")
    assert targets == [
        Target("mx.b.test", 9001, "srv", (PUBLIC_1, PUBLIC_V6)),
        Target("backup.b.test", 9002, "srv", (PUBLIC_1,)),
    ]


def test_srv_dot_target_is_no_route(dnsd: TestDNS) -> None:
    dnsd.add("_mmtp._tcp.b.test", "SRV", (0, 0, 0, "."))
    dnsd.add("b.test", "A", PUBLIC_1)  # an address does not override the explicit refusal
    resolver = make(dnsd)
    with pytest.raises(MMTPError) as info:
        resolver.resolve("b.test")
    assert info.value.code == NO_ROUTE and "'.'" in info.value.message


def test_srv_targets_without_address_are_skipped(dnsd: TestDNS) -> None:
    dnsd.add("_mmtp._tcp.b.test", "SRV", (10, 0, 9001, "gone.b.test"))
    dnsd.add("_mmtp._tcp.b.test", "SRV", (20, 0, 9002, "mx.b.test"))
    dnsd.add("mx.b.test", "A", PUBLIC_1)
    assert make(dnsd).resolve("b.test") == [Target("mx.b.test", 9002, "srv", (PUBLIC_1,))]


def test_srv_with_no_target_address_at_all_is_no_route(dnsd: TestDNS) -> None:
    dnsd.add("_mmtp._tcp.b.test", "SRV", (10, 0, 9001, "gone.b.test"))
    assert code_of(lambda: make(dnsd).resolve("b.test")) == NO_ROUTE


def test_failing_target_lookup_does_not_hide_a_good_one(dnsd: TestDNS) -> None:
    dnsd.add("_mmtp._tcp.b.test", "SRV", (10, 0, 9001, "broken.b.test"))
    dnsd.add("_mmtp._tcp.b.test", "SRV", (20, 0, 9002, "mx.b.test"))
    dnsd.servfail.add("broken.b.test")
    dnsd.add("mx.b.test", "A", PUBLIC_1)
    assert make(dnsd).resolve("b.test") == [Target("mx.b.test", 9002, "srv", (PUBLIC_1,))]


def test_only_failing_target_lookups_are_temporary(dnsd: TestDNS) -> None:
    dnsd.add("_mmtp._tcp.b.test", "SRV", (10, 0, 9001, "broken.b.test"))
    dnsd.servfail.add("broken.b.test")
    assert code_of(lambda: make(dnsd).resolve("b.test")) == REMOTE_UNAVAILABLE


def test_large_srv_answer_goes_over_tcp(dnsd: TestDNS) -> None:
    for index in range(40):
        dnsd.add("_mmtp._tcp.b.test", "SRV", (10, 1, 9000 + index, f"mx{index}.b.test"))
        dnsd.add(f"mx{index}.b.test", "A", PUBLIC_1)
    targets = make(dnsd).resolve("b.test")
    # All 40 read (over TCP), only the first MAX_SRV_TARGETS resolved and kept.
    assert len(targets) == MAX_SRV_TARGETS
    assert dnsd.tcp_queries >= 1


def test_order_srv_weights_follow_rfc2782() -> None:
    rng = random.Random(7)
    records = [(10, 90, 1, "heavy"), (10, 10, 2, "light"), (5, 0, 3, "first"), (20, 0, 4, "last")]
    firsts: Counter[str] = Counter()
    for _ in range(4000):
        ordered = order_srv(records, rng)
        names = [r[3] for r in ordered]
        assert names[0] == "first" and names[-1] == "last"
        assert sorted(r[3] for r in ordered) == ["first", "heavy", "last", "light"]
        firsts[ordered[1][3]] += 1
    assert 0.85 < firsts["heavy"] / 4000 < 0.95


def test_order_srv_zero_weights_still_drawn() -> None:
    rng = random.Random(1)
    records = [(1, 0, 1, "a"), (1, 0, 2, "b"), (1, 0, 3, "c")]
    seen = {tuple(r[3] for r in order_srv(records, rng)) for _ in range(300)}
    assert all(sorted(order) == ["a", "b", "c"] for order in seen)
    assert len(seen) > 1


# --- address fallback --------------------------------------------------------------------


def test_no_srv_falls_back_to_addresses_on_8026(dnsd: TestDNS) -> None:
    dnsd.add("b.test", "A", PUBLIC_1)
    dnsd.add("b.test", "AAAA", PUBLIC_V6)
    assert make(dnsd).resolve("b.test") == [
        Target("b.test", DEFAULT_RELAY_PORT, "address", (PUBLIC_1, PUBLIC_V6))
    ]


def test_srv_no_data_falls_back_too(dnsd: TestDNS) -> None:
    # _mmtp._tcp.b.test exists (it has an A record) but holds no SRV: NOERROR, no data.
    dnsd.add("_mmtp._tcp.b.test", "A", PUBLIC_1)
    dnsd.add("b.test", "AAAA", PUBLIC_V6)
    assert make(dnsd).resolve("b.test") == [
        Target("b.test", DEFAULT_RELAY_PORT, "address", (PUBLIC_V6,))
    ]


def test_nxdomain_is_no_route(dnsd: TestDNS) -> None:
    assert code_of(lambda: make(dnsd).resolve("nowhere.test")) == NO_ROUTE


def test_domain_without_addresses_is_no_route(dnsd: TestDNS) -> None:
    dnsd.add("b.test", "SRV", (1, 1, 1, "x.test"))  # exists, but no A/AAAA and no _mmtp SRV
    assert code_of(lambda: make(dnsd).resolve("b.test")) == NO_ROUTE


# --- private targets ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.1",
        "172.16.0.1",
        "169.254.1.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fd00::1",
        "::",
        "::ffff:127.0.0.1",
        "100.64.0.1",
        "224.0.0.1",
        TEST_NET_2,
    ],
)
def test_non_public_addresses(address: str) -> None:
    assert not is_public_address(address)


def test_public_addresses() -> None:
    assert is_public_address(PUBLIC_1) and is_public_address(PUBLIC_V6)
    assert not is_public_address("not an ip")


def test_private_dns_targets_are_no_route_unless_allowed(dnsd: TestDNS) -> None:
    dnsd.add("_mmtp._tcp.b.test", "SRV", (10, 0, 9001, "mx.b.test"))
    dnsd.add("mx.b.test", "A", "127.0.0.1")
    dnsd.add("c.test", "A", "10.0.0.5")
    resolver = make(dnsd)
    assert code_of(lambda: resolver.resolve("b.test")) == NO_ROUTE
    assert code_of(lambda: resolver.resolve("c.test")) == NO_ROUTE
    allowing = make(dnsd, allow_private=True)
    assert allowing.resolve("b.test") == [Target("mx.b.test", 9001, "srv", ("127.0.0.1",))]
    assert allowing.resolve("c.test")[0].addresses == ("10.0.0.5",)


def test_private_addresses_are_dropped_public_ones_kept(dnsd: TestDNS) -> None:
    dnsd.add("_mmtp._tcp.b.test", "SRV", (10, 0, 9001, "inside.b.test"))
    dnsd.add("_mmtp._tcp.b.test", "SRV", (20, 0, 9002, "mx.b.test"))
    dnsd.add("inside.b.test", "A", "192.168.1.1")
    dnsd.add("mx.b.test", "A", "10.0.0.1")
    dnsd.add("mx.b.test", "A", PUBLIC_1)
    assert make(dnsd).resolve("b.test") == [Target("mx.b.test", 9002, "srv", (PUBLIC_1,))]


# --- failures ----------------------------------------------------------------------------


def test_servfail_is_temporary(dnsd: TestDNS) -> None:
    dnsd.servfail.add("_mmtp._tcp.b.test")
    assert code_of(lambda: make(dnsd).resolve("b.test")) == REMOTE_UNAVAILABLE


def test_silent_server_times_out_quickly_as_temporary(dnsd: TestDNS) -> None:
    dnsd.silent.add("_mmtp._tcp.b.test")
    started = time.monotonic()
    assert code_of(lambda: make(dnsd, timeout=0.5).resolve("b.test")) == REMOTE_UNAVAILABLE
    assert time.monotonic() - started < 3


def test_dead_dns_server_is_temporary() -> None:
    resolver = Resolver(dns_server=f"127.0.0.1:{dead_udp_port()}", timeout=0.5)
    assert code_of(lambda: resolver.resolve("b.test")) == REMOTE_UNAVAILABLE


def test_failures_are_not_cached(dnsd: TestDNS, clock: Clock) -> None:
    dnsd.servfail.add("_mmtp._tcp.b.test")
    resolver = make(dnsd, clock)
    assert code_of(lambda: resolver.resolve("b.test")) == REMOTE_UNAVAILABLE
    dnsd.servfail.clear()
    dnsd.add("b.test", "A", PUBLIC_1)
    assert resolver.resolve("b.test")[0].addresses == (PUBLIC_1,)


@pytest.mark.parametrize("text", ["127.0.0.1", "ns.example:53", "127.0.0.1:0", "[::1]"])
def test_bad_dns_server_option(text: str) -> None:
    with pytest.raises(LocalError):
        Resolver(dns_server=text)


def test_dns_server_option_accepts_ipv6() -> None:
    Resolver(dns_server="[::1]:5353")


def test_cache_stays_bounded(dnsd: TestDNS, clock: Clock) -> None:
    for index in range(30):
        dnsd.add(f"d{index}.test", "A", PUBLIC_1)
    resolver = make(dnsd, clock)
    resolver.cache.max_entries = 10
    for index in range(30):
        resolver.resolve(f"d{index}.test")
    assert len(resolver.cache) <= 10
    assert resolver.resolve("d29.test")[0].host == "d29.test"


# --- caching -----------------------------------------------------------------------------


def test_answers_are_cached_for_their_ttl(dnsd: TestDNS, clock: Clock) -> None:
    dnsd.negative_ttl = 1000  # the AAAA "no data" outlives the test
    dnsd.add("_mmtp._tcp.b.test", "SRV", (10, 0, 9001, "mx.b.test"), ttl=100)
    dnsd.add("mx.b.test", "A", PUBLIC_1, ttl=300)
    resolver = make(dnsd, clock)
    resolver.resolve("b.test")
    asked = sum(dnsd.queries.values())
    clock.now += 99
    resolver.resolve("b.test")
    assert sum(dnsd.queries.values()) == asked
    clock.now += 2  # the SRV expired, the A did not
    dnsd.remove("_mmtp._tcp.b.test")
    dnsd.add("_mmtp._tcp.b.test", "SRV", (10, 0, 9009, "mx.b.test"), ttl=100)
    assert resolver.resolve("b.test") == [Target("mx.b.test", 9009, "srv", (PUBLIC_1,))]
    assert dnsd.queries[("_mmtp._tcp.b.test", "SRV")] == 2
    assert dnsd.queries[("mx.b.test", "A")] == 1


def test_negative_answers_cached_for_soa_minimum(dnsd: TestDNS, clock: Clock) -> None:
    dnsd.negative_ttl = 30
    resolver = make(dnsd, clock)
    assert code_of(lambda: resolver.resolve("b.test")) == NO_ROUTE
    dnsd.add("b.test", "A", PUBLIC_1)
    clock.now += 29
    assert code_of(lambda: resolver.resolve("b.test")) == NO_ROUTE
    clock.now += 2
    assert resolver.resolve("b.test")[0].addresses == (PUBLIC_1,)


def test_zero_ttl_is_not_cached(dnsd: TestDNS, clock: Clock) -> None:
    dnsd.add("b.test", "A", PUBLIC_1, ttl=0)
    resolver = make(dnsd, clock)
    resolver.resolve("b.test")
    resolver.resolve("b.test")
    assert dnsd.queries[("b.test", "A")] == 2


def test_cached_never_queries(dnsd: TestDNS, clock: Clock) -> None:
    dnsd.add("_mmtp._tcp.b.test", "SRV", (10, 0, 9001, "mx.b.test"))
    dnsd.add("mx.b.test", "A", PUBLIC_1)
    resolver = make(dnsd, clock)
    assert resolver.cached("b.test") is None
    assert sum(dnsd.queries.values()) == 0
    resolved = resolver.resolve("b.test")
    assert resolver.cached("b.test") == resolved
    clock.now += 301
    assert resolver.cached("b.test") is None


def test_cached_no_route_raises(dnsd: TestDNS) -> None:
    resolver = make(dnsd)
    assert code_of(lambda: resolver.resolve("b.test")) == NO_ROUTE
    assert code_of(lambda: resolver.cached("b.test")) == NO_ROUTE


def test_submit_resolves_on_worker_threads(dnsd: TestDNS) -> None:
    dnsd.add("b.test", "A", PUBLIC_1)
    dnsd.add("c.test", "A", PUBLIC_1)
    resolver = make(dnsd)
    with ThreadPoolExecutor(4) as pool:
        futures = [resolver.submit(pool, d) for d in ("b.test", "c.test", "nowhere.test")]
        assert futures[0].result(5)[0].host == "b.test"
        assert futures[1].result(5)[0].host == "c.test"
        with pytest.raises(MMTPError):
            futures[2].result(5)
