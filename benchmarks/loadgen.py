"""Closed-loop load: N connections, each sending its next request when the last is answered.

Connections are threads spread over a few client processes (spawned, so the GIL of one
process does not cap the load). Each process builds its own requests before the clock starts
(packets sealed, signed and stamped; SMTP messages formatted), opens its connections, then
waits at a barrier; the timed part is only the requests. Every run is bounded by a request
count and by a deadline.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import smtplib
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from common import HOST

BODY_BYTES = 2048


@dataclass
class Job:
    kind: str  # "mmtp" or "smtp"
    port: int
    connections: int  # in this process
    per_connection: int
    seconds: float  # deadline for the timed part
    # A local sender (SPEC §3): each connection authenticates as it (`auth_key`, before the
    # clock starts; needs allow_plain_auth) or each packet is signed (`signing_key`).
    sender: str = "(alice)%(example.com)"
    recipient: str = "(bob)%(example.com)"
    signing_key: str | None = None  # armored private key
    difficulty: int = 8
    auth_key: str | None = None  # armored private key of `sender`
    # Several mailboxes: packet i goes to spread[i % len(spread)] instead of `recipient`.
    spread: tuple[str, ...] = ()


@dataclass
class LoadResult:
    requests: int
    errors: int
    elapsed: float
    latencies: list[float]
    first_error: str = ""


def body_text(i: int) -> str:
    """BODY_BYTES of text in lines of at most 72 characters (SMTP allows 998)."""
    line = f"benchmark message {i:08d} lorem ipsum dolor sit amet consectetur adipi\r\n"
    return (line * (BODY_BYTES // len(line) + 1))[:BODY_BYTES]


def build_packets(job: Job, count: int, seed: int) -> list[dict[str, Any]]:
    from mmtp_proto import hashcash, pgp
    from mmtp_proto.message import seal
    from mmtp_proto.packet import clear_content

    key = pgp.PrivateKey.from_armored(job.signing_key) if job.signing_key else None
    packets = []
    for i in range(count):
        packet = seal(
            sender=job.sender,
            recipient=job.spread[i % len(job.spread)] if job.spread else job.recipient,
            content=clear_content(f"bench {seed}-{i}", body_text(i)),
            sign_with=key,
        )
        packet["meta"]["hashcashToken"] = hashcash.mint(
            packet["recipient"], job.difficulty, packet["verification"]["messageHash"]
        )
        packets.append(packet)
    return packets


def authenticate(conn: Any, email: str, armored: str) -> None:
    """AUTH `conn` (a `mmtp_proto.client.Connection`) as `email` with its private key."""
    from mmtp_proto import pgp
    from mmtp_proto.canonical import auth_challenge

    key = pgp.PrivateKey.from_armored(armored)
    challenge = auth_challenge(str(conn.greeting["server"]), str(conn.greeting["nonce"]), email)
    conn.request("AUTH", {"email": email, "signature": pgp.sign_detached(challenge, key)})


def build_smtp(count: int, seed: int) -> list[bytes]:
    out = []
    for i in range(count):
        head = (
            "From: x@remote.example\r\nTo: bob@example.com\r\n"
            f"Subject: bench {seed}-{i}\r\nMessage-ID: <{seed}.{i}@remote.example>\r\n\r\n"
        )
        out.append((head + body_text(i)).encode("ascii"))
    return out


def _worker(job: Job, index: int, barrier: Any, results: Any) -> None:
    try:
        results.put(_run_worker(job, index, barrier))
    except BaseException as exc:  # report, so the parent does not wait for nothing
        barrier.abort()
        results.put(LoadResult(0, 1, 0.0, [], f"{type(exc).__name__}: {exc}"))


def _run_worker(job: Job, index: int, barrier: Any) -> LoadResult:
    total = job.connections * job.per_connection
    seed = os.getpid() * 1000 + index
    if job.kind == "mmtp":
        from mmtp_proto.client import Connection

        payloads: list[Any] = build_packets(job, total, seed)
        conns = [Connection(HOST, job.port, tls=False) for _ in range(job.connections)]
        if job.auth_key is not None:
            for conn in conns:
                authenticate(conn, job.sender, job.auth_key)
    else:
        payloads = build_smtp(total, seed)
        conns = []
        for _ in range(job.connections):
            smtp = smtplib.SMTP(HOST, job.port, timeout=30)
            smtp.ehlo("client.bench")
            conns.append(smtp)
    latencies: list[list[float]] = [[] for _ in conns]
    errors = [0] * len(conns)
    first_error: list[str] = []
    go = threading.Event()
    stop_at = [0.0]

    def run(i: int) -> None:
        conn = conns[i]
        mine = payloads[i * job.per_connection : (i + 1) * job.per_connection]
        go.wait()
        out = latencies[i]
        for payload in mine:
            t0 = time.monotonic()
            if t0 >= stop_at[0]:
                break
            try:
                if job.kind == "mmtp":
                    conn.request("SEND", {"packet": payload})
                else:
                    conn.sendmail("x@remote.example", ["bob@example.com"], payload)
            except Exception as exc:
                errors[i] += 1
                if not first_error:
                    first_error.append(f"{type(exc).__name__}: {exc}")
                if errors[i] > 3:
                    break
                continue
            out.append(time.monotonic() - t0)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(conns))]
    for t in threads:
        t.start()
    try:
        barrier.wait(timeout=300)
        started = time.monotonic()
        stop_at[0] = started + job.seconds
        go.set()
        for t in threads:
            t.join(job.seconds + 60)
        elapsed = time.monotonic() - started
    finally:
        go.set()
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.quit() if job.kind == "smtp" else conn.close()
    flat = [x for lat in latencies for x in lat]
    return LoadResult(len(flat), sum(errors), elapsed, flat, first_error[0] if first_error else "")


class Meter(Protocol):
    """Told when the timed part starts (the clients leave the barrier) and when it is over
    (every client process has exited), e.g. `proc_cpu.Accounts`."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def run_load(
    job: Job, total_connections: int, processes: int, meter: Meter | None = None
) -> LoadResult:
    """Spread `total_connections` over up to `processes` client processes; merge results."""
    processes = max(1, min(processes, total_connections))
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes + 1)
    results = ctx.Queue()
    procs = []
    share = [
        total_connections // processes + (i < total_connections % processes)
        for i in range(processes)
    ]
    try:
        for i, n in enumerate(share):
            sub = Job(**{**job.__dict__, "connections": n})
            p = ctx.Process(target=_worker, args=(sub, i, barrier, results), daemon=True)
            p.start()
            procs.append(p)
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=600)
        started = time.monotonic()
        if meter is not None:
            meter.start()
        parts = [results.get(timeout=job.seconds + 400) for _ in procs]
        wall = time.monotonic() - started
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
        if meter is not None:
            meter.stop()
    latencies = [x for part in parts for x in part.latencies]
    errors = sum(part.errors for part in parts)
    first = next((part.first_error for part in parts if part.first_error), "")
    elapsed = max([part.elapsed for part in parts] + [0.0]) or wall
    return LoadResult(len(latencies), errors, elapsed, latencies, first)
