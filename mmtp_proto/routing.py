"""Finding a domain's MMTP server (SPEC §8.1): static routes, DNS SRV, then address records.

`Resolver.resolve(domain)` answers an ordered list of `Target`s to try in turn, or raises
`MMTPError` with `NO_ROUTE` (the domain publishes no MMTP service: bounce) or
`REMOTE_UNAVAILABLE` (the resolver failed or timed out: retry later).

Threading: DNS lookups block (dnspython has no selectors-friendly API), so `resolve` must never
run on the server's event loop. It is thread-safe (one lock around the cache, never held across
a query), and the intended use is `Resolver.submit(executor, domain)` from the loop: a small
`ThreadPoolExecutor` does the lookup and the returned `Future` wakes the loop through its own
wake-up channel. `cached(domain)` answers from the cache alone, without blocking, so the common
case (a domain relayed to a minute ago) needs no thread hop at all.
"""

from __future__ import annotations

import ipaddress
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Literal

import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from .address import is_valid_domain
from .errors import NO_ROUTE, REMOTE_UNAVAILABLE, LocalError, MMTPError

DEFAULT_RELAY_PORT = 8026
SRV_PREFIX = "_mmtp._tcp."
DEFAULT_TIMEOUT = 5.0
# A negative answer without an SOA to say how long it holds is kept this long.
DEFAULT_NEGATIVE_TTL = 60
# Cache no DNS answer longer than a day, whatever its TTL says: a record fixed by its owner
# must reach us eventually.
MAX_TTL = 86_400
MAX_CACHE_ENTRIES = 10_000
# SRV targets looked at per domain, in RFC 2782 order: a domain naming hundreds (a victim's
# hosts) must not make one lookup resolve and connect to all of them (Postfix's
# smtp_mx_address_limit has the same purpose).
MAX_SRV_TARGETS = 10

Source = Literal["static", "srv", "address"]
_Kind = Literal["ok", "nxdomain", "nodata"]


@dataclass(frozen=True)
class Target:
    """One place to try. `addresses` are the IPs DNS gave (connect to these, not to `host`, so a
    second lookup cannot swap in an address the private-target check never saw); they are empty
    for a static route, whose `host` is connected to as the operator wrote it."""

    host: str
    port: int
    source: Source
    addresses: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_host_port(text: str, *, what: str = "address") -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT` → (host, port); `LocalError` in plain words otherwise."""
    host, sep, port_text = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise LocalError(f"{what} {text!r} must be HOST:PORT with a port from 1 to 65535")
    return host, int(port_text)


def parse_route(text: str) -> tuple[str, tuple[str, int]]:
    """One `--route DOMAIN=HOST:PORT` option → (domain, (host, port))."""
    domain, sep, target = text.partition("=")
    domain = domain.strip().lower()
    if not sep or not is_valid_domain(domain):
        raise LocalError(f"route {text!r} must be DOMAIN=HOST:PORT, e.g. b.example=10.0.0.2:8026")
    return domain, parse_host_port(target, what=f"route target for {domain}")


def parse_routes(texts: Iterable[str]) -> dict[str, tuple[str, int]]:
    """Repeated `--route` options; a domain given twice is a configuration mistake."""
    routes: dict[str, tuple[str, int]] = {}
    for text in texts:
        domain, target = parse_route(text)
        if domain in routes:
            raise LocalError(f"two routes for {domain}: give each domain one route")
        routes[domain] = target
    return routes


def is_public_address(text: str) -> bool:
    """False for loopback, private, link-local, unspecified, shared, reserved and multicast
    addresses (IPv4-mapped IPv6 included): anything that is not a global unicast address."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def order_srv(records: list[tuple[int, int, int, str]], rng: random.Random) -> list[tuple]:
    """RFC 2782 order of (priority, weight, port, target): ascending priority; within one
    priority a weighted random draw without replacement (a zero weight is drawn rarely, an
    all-zero group uniformly)."""
    ordered: list[tuple[int, int, int, str]] = []
    for priority in sorted({r[0] for r in records}):
        # RFC 2782: zero-weight records first in the list so they get a small chance too.
        group = sorted((r for r in records if r[0] == priority), key=lambda r: r[1] != 0)
        while group:
            total = sum(r[1] for r in group)
            if total == 0:
                # The RFC's draw would always take the first; spread all-zero groups evenly.
                ordered.append(group.pop(rng.randrange(len(group))))
                continue
            pick = rng.randint(0, total)
            running = 0
            for index, record in enumerate(group):
                running += record[1]
                if running >= pick:
                    ordered.append(group.pop(index))
                    break
    return ordered


@dataclass
class _Entry:
    kind: _Kind
    records: tuple = ()
    expires: float = 0.0


@dataclass
class DnsCache:
    """DNS answers by (name, type), each kept for its TTL as measured by `clock`."""

    clock: Callable[[], float] = time.monotonic
    max_entries: int = MAX_CACHE_ENTRIES
    _entries: dict[tuple[str, str], _Entry] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, name: str, rdtype: str) -> _Entry | None:
        with self._lock:
            entry = self._entries.get((name, rdtype))
            if entry is None:
                return None
            if entry.expires <= self.clock():
                del self._entries[(name, rdtype)]
                return None
            return entry

    def put(self, name: str, rdtype: str, kind: _Kind, records: tuple, ttl: int) -> _Entry:
        ttl = max(0, min(int(ttl), MAX_TTL))
        now = self.clock()
        entry = _Entry(kind, records, now + ttl)
        if ttl > 0:
            with self._lock:
                if len(self._entries) >= self.max_entries:
                    self._make_room(now)
                self._entries.pop((name, rdtype), None)
                self._entries[(name, rdtype)] = entry
        return entry

    def _make_room(self, now: float) -> None:
        """Lookups for made-up domains must not grow memory without end: drop what expired,
        then the oldest entries."""
        for key in [k for k, e in self._entries.items() if e.expires <= now]:
            del self._entries[key]
        while len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class _NotCached(Exception):
    """`cached()` needs a query it may not make."""


class Resolver:
    """Domain → ordered targets, SPEC §8.1. See the module docstring for threading."""

    def __init__(
        self,
        routes: dict[str, tuple[str, int]] | None = None,
        *,
        dns_server: str | None = None,
        allow_private: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.routes = {d.lower(): t for d, t in (routes or {}).items()}
        self.allow_private = allow_private
        self.timeout = timeout
        self.cache = DnsCache(clock)
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self._dns_server = _parse_dns_server(dns_server) if dns_server else None
        self._dns: dns.resolver.Resolver | None = None

    # --- public API ---------------------------------------------------------------------

    def resolve(self, domain: str) -> list[Target]:
        """Blocking. The targets of `domain` in the order to try them."""
        return self._resolve(domain.lower(), allow_queries=True)

    def cached(self, domain: str) -> list[Target] | None:
        """Non-blocking: the answer when every record it needs is cached, else None. Raises
        like `resolve` for a cached NO_ROUTE."""
        try:
            return self._resolve(domain.lower(), allow_queries=False)
        except _NotCached:
            return None

    def submit(self, executor: Executor, domain: str) -> Future[list[Target]]:
        """`resolve` on a worker thread of `executor`."""
        return executor.submit(self.resolve, domain)

    # --- the three steps ----------------------------------------------------------------

    def _resolve(self, domain: str, *, allow_queries: bool) -> list[Target]:
        route = self.routes.get(domain)
        if route is not None:
            return [Target(route[0], route[1], "static")]
        if not is_valid_domain(domain):
            raise MMTPError(NO_ROUTE, f"{domain!r} is not a domain name")
        srv = self._query(SRV_PREFIX + domain, "SRV", allow_queries)
        if srv.kind == "ok" and srv.records:
            return self._srv_targets(domain, list(srv.records), allow_queries)
        addresses = self._addresses(domain, allow_queries)
        if not addresses:
            raise MMTPError(
                NO_ROUTE, f"{domain} publishes no MMTP service (no SRV record and no address)"
            )
        return [Target(domain, DEFAULT_RELAY_PORT, "address", self._usable(domain, addresses))]

    def _srv_targets(self, domain: str, records: list, allow_queries: bool) -> list[Target]:
        real = [r for r in records if r[3] != "."]
        if not real:
            raise MMTPError(NO_ROUTE, f"{domain} says it takes no MMTP mail (SRV target '.')")
        with self._rng_lock:
            ordered = order_srv(real, self._rng)[:MAX_SRV_TARGETS]
        targets: list[Target] = []
        unavailable: MMTPError | None = None
        private: MMTPError | None = None
        for _priority, _weight, port, host in ordered:
            try:
                addresses = self._addresses(host, allow_queries)
                if addresses:
                    targets.append(Target(host, port, "srv", self._usable(host, addresses)))
            except MMTPError as exc:
                # One bad target never hides the good ones after it (SPEC §8.5).
                if exc.code == REMOTE_UNAVAILABLE:
                    unavailable = exc
                else:
                    private = exc
        if targets:
            return targets
        if unavailable is not None:
            raise unavailable
        raise private or MMTPError(
            NO_ROUTE, f"the MMTP servers {domain} names in DNS have no address"
        )

    def _addresses(self, host: str, allow_queries: bool) -> list[str]:
        """A and AAAA of `host` (either may be empty); NXDOMAIN on both is no address."""
        first = self._query(host, "A", allow_queries)
        if first.kind == "nxdomain":
            return []
        return [*first.records, *self._query(host, "AAAA", allow_queries).records]

    def _usable(self, host: str, addresses: list[str]) -> tuple[str, ...]:
        if self.allow_private:
            return tuple(addresses)
        public = tuple(a for a in addresses if is_public_address(a))
        if not public:
            raise MMTPError(
                NO_ROUTE,
                f"{host} resolves only to private or local addresses ({', '.join(addresses)}); "
                "relaying there needs the operator to allow private targets",
            )
        return public

    # --- DNS ----------------------------------------------------------------------------

    def _query(self, name: str, rdtype: str, allow_queries: bool) -> _Entry:
        name = name.lower().rstrip(".")
        entry = self.cache.get(name, rdtype)
        if entry is not None:
            return entry
        if not allow_queries:
            raise _NotCached
        resolver = self._resolver()
        try:
            answer = resolver.resolve(
                dns.name.from_text(name), rdtype, raise_on_no_answer=False, search=False
            )
        except dns.resolver.NXDOMAIN as exc:
            return self.cache.put(name, rdtype, "nxdomain", (), _negative_ttl(exc))
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.exception.DNSException):
            raise MMTPError(
                REMOTE_UNAVAILABLE,
                f"the DNS lookup of {name} ({rdtype}) failed or timed out; will try again later",
            ) from None
        if answer.rrset is None:
            ttl = _soa_ttl(answer.response) or DEFAULT_NEGATIVE_TTL
            return self.cache.put(name, rdtype, "nodata", (), ttl)
        return self.cache.put(name, rdtype, "ok", _records(answer.rrset), answer.rrset.ttl)

    def _resolver(self) -> dns.resolver.Resolver:
        if self._dns is None:
            if self._dns_server is not None:
                resolver = dns.resolver.Resolver(configure=False)
                resolver.nameservers = [dns.nameserver.Do53Nameserver(*self._dns_server)]
            else:
                try:
                    resolver = dns.resolver.Resolver()
                except dns.exception.DNSException:
                    raise MMTPError(
                        REMOTE_UNAVAILABLE, "this host has no DNS resolver configured"
                    ) from None
            resolver.lifetime = self.timeout
            resolver.timeout = self.timeout
            # Our own TTL cache; dnspython's would hide expiry from the injectable clock.
            resolver.cache = None
            self._dns = resolver
        return self._dns


def _parse_dns_server(text: str) -> tuple[str, int]:
    host, port = parse_host_port(text, what="DNS server")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise LocalError(f"DNS server {text!r}: give an IP address, e.g. 127.0.0.1:53") from None
    return host, port


def _records(rrset) -> tuple:
    if rrset.rdtype == dns.rdatatype.SRV:
        return tuple(
            (r.priority, r.weight, r.port, r.target.to_text(omit_final_dot=True).lower() or ".")
            for r in rrset
        )
    return tuple(r.address for r in rrset)


def _soa_ttl(response) -> int | None:
    """RFC 2308: a negative answer holds for min(SOA TTL, SOA MINIMUM)."""
    for rrset in getattr(response, "authority", ()) or ():
        if rrset.rdtype == dns.rdatatype.SOA:
            return min(rrset.ttl, *(r.minimum for r in rrset))
    return None


def _negative_ttl(exc: dns.resolver.NXDOMAIN) -> int:
    for response in exc.responses().values():
        ttl = _soa_ttl(response)
        if ttl is not None:
            return ttl
    return DEFAULT_NEGATIVE_TTL
