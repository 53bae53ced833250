"""Admission and memory accounting for the server loop (SPEC §7), pure: no sockets, no clock.

Three rules the loop applies by calling in here:

- **Connection caps**: total, per address, and per network (IPv4 /24, IPv6 /64), because one
  address is cheap to multiply (a /24 of cloud addresses, or the 2^64 addresses of one IPv6
  /64) while its network is not. `Admission` counts admitted connections and says why one
  more would be refused.
- **A budget for unfinished frames** across all connections: `over_budget` names the
  connections to shed, largest unfinished frame first, until the rest fits.
- **A minimum rate for a large unfinished frame**: `FrameProgress` says when a connection's
  unfinished frame has stopped advancing fast enough to be worth the memory it holds.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable, Iterable
from typing import TypeVar

IPV4_PREFIX = 24
IPV6_PREFIX = 64
# An unfinished frame this small costs little (a telnet user typing, a slow phone sending a
# CHECK): the rate rule leaves it alone; the connection caps and idle timeout bound it.
RATE_FREE_BYTES = 64 * 1024

K = TypeVar("K", bound=Hashable)


def network_of(peer: str) -> str:
    """The network an address belongs to for the per-network cap: "a.b.c.0/24" for IPv4
    (IPv4-mapped IPv6 included, as a dual-stack listener reports IPv4 clients), the /64 for
    IPv6; an unparsable peer string is its own network."""
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return peer
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = IPV4_PREFIX if address.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


class Admission:
    """Admitted connections per address and per network, and in total."""

    def __init__(self, *, total: int, per_ip: int, per_network: int) -> None:
        self.max_total = total
        self.max_per_ip = per_ip
        self.max_per_network = per_network
        self.total = 0
        self._per_ip: dict[str, int] = {}
        self._per_network: dict[str, int] = {}

    def refusal(self, peer: str) -> str | None:
        """Why one more connection from `peer` is refused ("on this server", "from your
        address", "from your network (...)"), or None to admit it."""
        if self.total >= self.max_total:
            return "on this server"
        if self._per_ip.get(peer, 0) >= self.max_per_ip:
            return "from your address"
        network = network_of(peer)
        if self._per_network.get(network, 0) >= self.max_per_network:
            return f"from your network ({network})"
        return None

    def admit(self, peer: str) -> None:
        self.total += 1
        self._per_ip[peer] = self._per_ip.get(peer, 0) + 1
        network = network_of(peer)
        self._per_network[network] = self._per_network.get(network, 0) + 1

    def release(self, peer: str) -> None:
        self.total = max(0, self.total - 1)
        _decrement(self._per_ip, peer)
        _decrement(self._per_network, network_of(peer))

    def count(self, peer: str) -> tuple[int, int]:
        """(connections of this address, connections of its network)."""
        return self._per_ip.get(peer, 0), self._per_network.get(network_of(peer), 0)


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 1) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


def over_budget(partials: Iterable[tuple[K, int]], budget: int) -> list[K]:
    """The connections to shed so the unfinished frames left fit in `budget` bytes.

    `partials` is (connection, bytes of its unfinished frame). The largest go first: they
    free the most memory per connection closed, and a connection that built a large frame
    slowly is the likeliest to be holding memory on purpose. Ties go to the one listed first.
    """
    entries = [(size, index, key) for index, (key, size) in enumerate(partials) if size > 0]
    total = sum(size for size, _, _ in entries)
    shed: list[K] = []
    for size, _, key in sorted(entries, key=lambda e: (-e[0], e[1])):
        if total <= budget:
            break
        shed.append(key)
        total -= size
    return shed


class FrameProgress:
    """Whether a connection's unfinished frame still advances at `min_rate` bytes a second.

    Measured over windows of `grace` seconds, while the frame is over RATE_FREE_BYTES and
    the server is reading from the connection (a client the server is not reading from
    cannot advance, and is not blamed): a window in which fewer than min_rate * its length
    bytes arrived means the frame is stalled. A window restarts after each check it passes.
    """

    __slots__ = ("_mark", "_since")

    def __init__(self) -> None:
        self._since: float | None = None
        self._mark = 0

    def stalled(
        self,
        now: float,
        *,
        unfinished: int,
        received: int,
        reading: bool,
        grace: float,
        min_rate: float,
    ) -> bool:
        """`unfinished`: bytes of the frame held now; `received`: all bytes ever received
        on the connection (a counter that only grows)."""
        if min_rate <= 0 or unfinished <= RATE_FREE_BYTES or not reading:
            self._since = None
            return False
        if self._since is None:
            self._since, self._mark = now, received
            return False
        elapsed = now - self._since
        if elapsed < grace:
            return False
        if received - self._mark < min_rate * elapsed:
            return True
        self._since, self._mark = now, received
        return False
