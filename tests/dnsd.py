"""A small real DNS server for tests (dnslib), on 127.0.0.1, UDP and TCP on one free port.

Zone data is a dict the test edits while the server runs:
    dnsd.add("_mmtp._tcp.b.test", "SRV", (10, 5, 8026, "mx.b.test"), ttl=300)
    dnsd.add("mx.b.test", "A", "127.0.0.1")
Names with no record get NXDOMAIN; a name with records of other types gets NOERROR/no data
(with an SOA in the authority section, as a real server sends). `servfail` names answer
SERVFAIL, `silent` names get no answer at all (the client times out).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter, defaultdict
from typing import Any

from dnslib import AAAA, QTYPE, RCODE, RR, SOA, SRV, A, DNSLabel, DNSRecord
from dnslib.server import DNSError, DNSHandler, DNSLogger, DNSServer


class _Handler(DNSHandler):
    """Like a real server without EDNS: a UDP answer over 512 bytes is cut to its question with
    TC set, so the client asks again over TCP. (dnslib's own truncation drops the question, which
    a careful client rightly ignores as not an answer to what it asked.)"""

    def get_reply(self, data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        reply = self.server.resolver.resolve(request, self)
        packed = reply.pack()
        if self.protocol == "udp" and len(packed) > 512:
            cut = request.reply()
            cut.header.tc = 1
            packed = cut.pack()
        return packed


class TestDNS:
    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[tuple[Any, int]]] = defaultdict(list)
        self.servfail: set[str] = set()
        self.silent: set[str] = set()
        self.queries: Counter[tuple[str, str]] = Counter()
        self.tcp_queries = 0
        self.negative_ttl = 30
        self._lock = threading.Lock()
        self._servers: list[DNSServer] = []
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add(self, name: str, rtype: str, value: Any, ttl: int = 300) -> None:
        with self._lock:
            self.records[(name.lower().rstrip("."), rtype)].append((value, ttl))

    def remove(self, name: str, rtype: str | None = None) -> None:
        with self._lock:
            for key in list(self.records):
                if key[0] == name and (rtype is None or key[1] == rtype):
                    del self.records[key]

    # dnslib resolver interface
    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        qname = str(request.q.qname).lower().rstrip(".")
        qtype = QTYPE[request.q.qtype]
        with self._lock:
            self.queries[(qname, qtype)] += 1
            if handler.protocol == "tcp":
                self.tcp_queries += 1
            if qname in self.silent:
                raise DNSError("dropped on purpose")
            reply = request.reply()
            if qname in self.servfail:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            answers = self.records.get((qname, qtype), [])
            for value, ttl in answers:
                reply.add_answer(
                    RR(qname, QTYPE.reverse[qtype], rdata=_rdata(qtype, value), ttl=ttl)
                )
            if not answers:
                exists = any(key[0] == qname for key in self.records)
                if not exists:
                    reply.header.rcode = RCODE.NXDOMAIN
                soa = SOA("ns.test", "hostmaster.test", (1, 3600, 600, 86400, self.negative_ttl))
                reply.add_auth(RR("test", QTYPE.SOA, rdata=soa, ttl=self.negative_ttl))
            return reply

    def start(self) -> TestDNS:
        quiet = DNSLogger(logf=lambda _msg: None)
        for _ in range(50):
            udp = DNSServer(self, "127.0.0.1", 0, logger=quiet, handler=_Handler)
            port = udp.server.server_address[1]
            try:
                tcp = DNSServer(self, "127.0.0.1", port, tcp=True, logger=quiet, handler=_Handler)
            except OSError:
                udp.server.server_close()
                continue
            self.port = port
            self._servers = [udp, tcp]
            for server in self._servers:
                # A short poll interval keeps stop() (which waits for one poll) fast.
                thread = threading.Thread(
                    target=server.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
                )
                thread.start()
            return self
        raise RuntimeError("no port free for both UDP and TCP")

    def stop(self) -> None:
        for server in self._servers:
            with contextlib.suppress(Exception):
                server.stop()
                server.server.server_close()


def _rdata(qtype: str, value: Any):
    if qtype == "A":
        return A(value)
    if qtype == "AAAA":
        return AAAA(value)
    if qtype == "SRV":
        priority, weight, port, target = value
        return SRV(priority, weight, port, DNSLabel(target))
    raise ValueError(f"unsupported record type {qtype}")


def dead_udp_port() -> int:
    """A UDP port on 127.0.0.1 nobody listens on (queries to it go unanswered or refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
