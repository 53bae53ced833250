"""Relay throughput a.test -> b.test against local delivery on one server, side by side.

Two servers run as subprocesses, a.test and b.test, relaying to each other by static routes
(TLS pinned on first use), durable at both ends (fsync on). Local: 16 connections SEND signed
mail from a b.test user to a b.test mailbox on b.test's server. Relay: 16 connections submit
signed mail from an a.test user to a b.test mailbox at a.test's server, which queues it and
relays it; the relay's rate is counted until the last message is in the b.test mailbox.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from common import (
    HOST,
    Section,
    Target,
    fmt_ms,
    fmt_rate,
    free_port,
    percentile,
    rate,
    scratch_dir,
    stop_process,
    wait_for_port,
)
from loadgen import Job, run_load
from proc_cpu import Tree

ALICE = "(alice)%(a.test)"
CAROL = "(carol)%(b.test)"


def _mailbox(k: int) -> str:
    return f"(bob{k})%(b.test)"


@contextlib.contextmanager
def _servers(root: Path) -> Iterator[tuple[dict[str, tuple[int, int]], dict[str, int]]]:
    ports = {d: (free_port(), free_port()) for d in ("a.test", "b.test")}
    procs = []
    try:
        for domain, (plain, tls) in ports.items():
            other = "b.test" if domain == "a.test" else "a.test"
            data = root / domain
            log = root / f"{domain}.log"
            command = [
                sys.executable,
                "-m",
                "mmtp_proto.server_cli",
                "--host",
                HOST,
                "--port",
                str(plain),
                "--secure-port",
                str(tls),
                "--data-dir",
                str(data),
                "--domain",
                domain,
                "--difficulty",
                "8",
                "--log-level",
                "WARNING",
                "--allow-plain-auth",
                "--relay",
                "--relay-tls-verify",
                "tofu",
                "--route",
                f"{other}={HOST}:{ports[other][1]}",
            ]
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            procs.append(proc)
            wait_for_port(plain, proc, 30.0, log)
            wait_for_port(tls, proc, 30.0, log)
        yield ports, {domain: proc.pid for domain, proc in zip(ports, procs, strict=True)}
    finally:
        for proc in procs:
            stop_process(proc)


def _register(port: int, emails: list[str]) -> dict[str, str]:
    from mmtp_proto import pgp
    from mmtp_proto.client import Connection

    keys = {e: pgp.generate_key(e, "Bench", algorithm="ed25519") for e in emails}
    conn = Connection(HOST, port, tls=False)
    try:
        for email, key in keys.items():
            conn.request("REGISTER_KEY", {"email": email, "publicKey": key.public.armored})
    finally:
        conn.close()
    return {email: key.armored for email, key in keys.items()}


def _clients_cpu() -> float:
    """CPU seconds of this process's finished children (the load clients)."""
    times = os.times()
    return times.children_user + times.children_system


@contextlib.contextmanager
def _counter(port: int, email: str, armored: str) -> Iterator[Callable[[], int]]:
    """How many messages `email`'s mailbox holds, asked on one authenticated connection: a
    fresh AUTH per look would have the server verify a signature (and this process make one)
    every 50 ms while the relayed mail is still arriving."""
    from mmtp_proto import pgp
    from mmtp_proto.canonical import auth_challenge
    from mmtp_proto.client import Connection

    conn = Connection(HOST, port, tls=False)
    try:
        greeting = conn.greeting
        key = pgp.PrivateKey.from_armored(armored)
        challenge = auth_challenge(greeting["server"], greeting["nonce"], email)
        conn.request("AUTH", {"email": email, "signature": pgp.sign_detached(challenge, key)})
        yield lambda: int(conn.request("CHECK", {"email": email})["count"])
    finally:
        conn.close()


def run(quick: bool, log=print) -> Section:
    section = Section(
        "Relay a.test -> b.test vs local delivery (durable at both ends, signed, 16 connections)",
        ["variant", "msgs", "submitted msg/s", "p50 ms", "p99 ms", "delivered msg/s"],
    )
    per_conn = 20 if quick else 80
    seconds = 5.0 if quick else 15.0
    profile = os.environ.get("MMTP_BENCH_PROFILE")
    with (
        scratch_dir("relay") as root,
        _servers(root) as (ports, pids),
        contextlib.ExitStack() as stack,
    ):
        a_plain, b_plain = ports["a.test"][0], ports["b.test"][0]
        b_keys = _register(b_plain, [CAROL, _mailbox(0), _mailbox(1)])
        a_keys = _register(a_plain, [ALICE])
        # Warm the relay path (key fetches, TLS pins) with one message, outside the clock.
        warm = Job("mmtp", a_plain, 0, 1, 30.0, sender=ALICE, signing_key=a_keys[ALICE])
        warm.recipient = _mailbox(1)
        run_load(warm, 1, 1)
        deadline = time.monotonic() + 60
        with _counter(b_plain, _mailbox(1), b_keys[_mailbox(1)]) as count:
            while count() < 1:
                if time.monotonic() > deadline:
                    raise RuntimeError("the warm-up message was never relayed")
                time.sleep(0.1)

        # CPU per process of both servers' trees (/proc) in each run, and with
        # MMTP_BENCH_PROFILE=DIR a py-spy profile of each process of the relayed run in DIR.
        tree = Tree(pids, Path(profile) if profile else None)
        cpu: dict[str, str] = {}

        log("  relay: local delivery on b.test, 16 connections...")
        local = Job("mmtp", b_plain, 0, per_conn, seconds, sender=CAROL)
        local.signing_key, local.recipient = b_keys[CAROL], _mailbox(1)
        tree.start(profile=False)
        before = _clients_cpu()
        local_result = run_load(local, 16, 2)
        local_rate = rate(local_result.requests, local_result.elapsed)
        tree.stop()
        cpu["local"] = tree.summary(_clients_cpu() - before)

        log("  relay: a.test -> b.test, 16 connections...")
        relay = Job("mmtp", a_plain, 0, per_conn, seconds, sender=ALICE)
        relay.signing_key, relay.recipient = a_keys[ALICE], _mailbox(0)
        count = stack.enter_context(_counter(b_plain, _mailbox(0), b_keys[_mailbox(0)]))
        tree.start()
        before = _clients_cpu()
        relay_result = run_load(relay, 16, 2)
        # Counted from the first submission, as the local rate is: not from the start of
        # the client processes, which sign their packets before the load begins.
        started = time.monotonic() - relay_result.elapsed
        sent = relay_result.requests
        delivered = 0
        deadline = time.monotonic() + 120
        while delivered < sent and time.monotonic() < deadline:
            delivered = count()
            if delivered < sent:
                time.sleep(0.05)
        relay_elapsed = time.monotonic() - started
        tree.stop()
        cpu["relayed"] = tree.summary(_clients_cpu() - before)
        relay_rate = rate(delivered, relay_elapsed)

    for name, result, delivered_rate in (
        ("local (b.test -> b.test)", local_result, local_rate),
        ("relayed (a.test -> b.test)", relay_result, relay_rate),
    ):
        if result.errors:
            section.notes.append(f"{name}: {result.errors} errors, first: {result.first_error}")
        section.rows.append(
            [
                name,
                str(result.requests),
                fmt_rate(rate(result.requests, result.elapsed)),
                fmt_ms(percentile(result.latencies, 50)),
                fmt_ms(percentile(result.latencies, 99)),
                fmt_rate(delivered_rate),
            ]
        )
    ratio = relay_rate / local_rate if local_rate else 0.0
    section.targets.append(
        Target(
            "relayed messages/s (until in the remote mailbox) >= 50% of local delivery",
            f"{ratio:.0%} ({fmt_rate(relay_rate)} vs {fmt_rate(local_rate)} msg/s)",
            ">= 50%",
            ratio >= 0.5,
        )
    )
    # The issue asks for this figure, with no goal: a note, not a target left "not measured".
    section.notes.append(
        "p99 submission latency at the home server (queued: true), 16 connections: "
        f"{fmt_ms(percentile(relay_result.latencies, 99))} ms (local delivery: "
        f"{fmt_ms(percentile(local_result.latencies, 99))} ms)"
    )
    section.notes.append(
        f"relayed: {delivered} of {sent} submitted messages were in b.test's mailbox "
        f"{relay_elapsed:.1f} s after the load started"
    )
    section.notes.append(
        f"CPU seconds, local run ({local_result.elapsed:.1f} s): {cpu['local']}; relayed run"
        f" ({relay_elapsed:.1f} s): {cpu['relayed']} (load clients: their signing before the"
        " clock starts included)"
    )
    return section
