"""Durable SEND throughput and latency against aiosmtpd + Maildir (fsync), side by side.

Three servers run at once, each in its own subprocess and data directory: ours with fsync
(the default), ours with ``fsync = false``, and the aiosmtpd peer. For each concurrency the
variants run one right after the other, so the ratios compare like with like on a busy
machine. Stamps (difficulty 8) are minted and signatures made before the clock starts.
"""

from __future__ import annotations

import contextlib

from common import Section, Target, fmt_ms, fmt_rate, mmtp_server, percentile, rate
from loadgen import Job, LoadResult, run_load

ALICE = "(alice)%(example.com)"
BOB = "(bob)%(example.com)"


def register_keys(port: int, recipients: int = 1) -> dict[str, str]:
    """Ed25519 keys for alice (a local signer) and `recipients` mailboxes (bob, bob1, ...).

    Returns the armored private keys by address. Each timed run sends to a mailbox of its
    own: the server's cost per SEND grows with the recipient's mailbox (see RESULTS.md,
    mailbox section), so sharing one would make later runs pay for earlier ones.
    """
    from mmtp_proto import pgp

    keys = {ALICE: pgp.generate_key(ALICE, "Alice", algorithm="ed25519").armored}
    for k in range(recipients):
        email = recipient(k)
        keys[email] = pgp.generate_key(email, "Bob", algorithm="ed25519").armored
    register_same(port, keys)
    return keys


def recipient(k: int) -> str:
    return BOB if k == 0 else f"(bob{k})%(example.com)"


def register_same(port: int, keys: dict[str, str]) -> None:
    from mmtp_proto import pgp
    from mmtp_proto.client import Connection

    conn = Connection("127.0.0.1", port, tls=False)
    try:
        for email, armored in keys.items():
            public = pgp.PrivateKey.from_armored(armored).public.armored
            conn.request("REGISTER_KEY", {"email": email, "publicKey": public})
    finally:
        conn.close()


def _summary(result: LoadResult) -> tuple[float, float, float]:
    return (
        rate(result.requests, result.elapsed),
        percentile(result.latencies, 50),
        percentile(result.latencies, 99),
    )


def run(quick: bool, log=print) -> Section:
    import peer_smtp

    section = Section(
        "Durable SEND (2 KB bodies, difficulty 8, stamps pre-minted)",
        ["variant", "conns", "msgs", "msg/s", "p50 ms", "p99 ms", "vs peer"],
    )
    levels = (1, 16, 64)
    # requests per connection at each level, and the deadline of each timed run
    per_conn = {1: 300, 16: 60, 64: 20} if quick else {1: 2000, 16: 400, 64: 120}
    seconds = 4.0 if quick else 10.0
    processes = 2

    peer_version = peer_smtp.ensure_env(log)
    section.notes.append(
        "each timed run sends to a mailbox of its own, so every run starts from the same "
        "state; the mailbox section compares SENDs into an empty and a full mailbox"
    )
    if peer_version is None:
        section.notes.append("aiosmtpd peer skipped: could not create benchmarks/.env")
    else:
        section.notes.append(
            f"peer: aiosmtpd {peer_version} in benchmarks/.env, Maildir with fsync of the file "
            "and of new/ before 250 (stores in the event loop's thread pool); driven by smtplib "
            "(EHLO once per connection, then MAIL/RCPT/DATA per message)"
        )

    with contextlib.ExitStack() as stack:
        # Unsigned SENDs come from alice authenticated on each connection (over plain TCP).
        durable = stack.enter_context(
            mmtp_server("send", difficulty=8, fsync=True, allow_plain_auth=True)
        )
        nofsync = stack.enter_context(
            mmtp_server("send-nofsync", difficulty=8, fsync=False, allow_plain_auth=True)
        )
        peer_port = stack.enter_context(peer_smtp.peer_server()) if peer_version else None
        keys = register_keys(durable.port, recipients=4 * len(levels))
        register_same(nofsync.port, keys)
        mailboxes = iter(range(4 * len(levels)))

        results: dict[tuple[str, int], tuple[float, float, float, int]] = {}
        for level in levels:
            n = per_conn[level]
            variants: list[tuple[str, Job]] = [
                (
                    "ours, durable, unsigned",
                    Job("mmtp", durable.port, 0, n, seconds, auth_key=keys[ALICE]),
                ),
                (
                    "ours, durable, signed (Ed25519)",
                    Job("mmtp", durable.port, 0, n, seconds, sender=ALICE, signing_key=keys[ALICE]),
                ),
                (
                    "ours, fsync off, unsigned",
                    Job("mmtp", nofsync.port, 0, n, seconds, auth_key=keys[ALICE]),
                ),
            ]
            if peer_port:
                variants.insert(
                    1, ("aiosmtpd + Maildir fsync", Job("smtp", peer_port, 0, n, seconds))
                )
            for name, job in variants:
                job.recipient = recipient(next(mailboxes))
                log(f"  SEND: {name}, {level} connection(s)...")
                result = run_load(job, level, processes)
                if result.errors:
                    section.notes.append(
                        f"{name} at {level}: {result.errors} errors, first: {result.first_error}"
                    )
                throughput, p50, p99 = _summary(result)
                results[(name, level)] = (throughput, p50, p99, result.requests)

        peer_name = "aiosmtpd + Maildir fsync"
        for level in levels:
            peer = results.get((peer_name, level))
            for (name, lvl), (throughput, p50, p99, count) in results.items():
                if lvl != level:
                    continue
                versus = f"{throughput / peer[0]:.2f}x" if peer and peer[0] else "-"
                section.rows.append(
                    [
                        name,
                        str(level),
                        str(count),
                        fmt_rate(throughput),
                        fmt_ms(p50),
                        fmt_ms(p99),
                        versus,
                    ]
                )

    ours16 = results.get(("ours, durable, unsigned", 16))
    signed16 = results.get(("ours, durable, signed (Ed25519)", 16))
    peer16 = results.get((peer_name, 16))
    off16 = results.get(("ours, fsync off, unsigned", 16))
    if ours16 and peer16 and peer16[0]:
        ratio = ours16[0] / peer16[0]
        section.targets.append(
            Target(
                "durable SEND at 16 connections >= 5x the aiosmtpd peer (unsigned)",
                f"{ratio:.2f}x ({fmt_rate(ours16[0])} vs {fmt_rate(peer16[0])} msg/s)",
                ">= 5x",
                ratio >= 5,
            )
        )
        if signed16:
            ratio_s = signed16[0] / peer16[0]
            section.targets.append(
                Target(
                    "  signed (Ed25519, verified in the server's worker processes)",
                    f"{ratio_s:.2f}x ({fmt_rate(signed16[0])} msg/s)",
                    ">= 3x",
                    ratio_s >= 3,
                )
            )
    else:
        section.targets.append(
            Target(
                "durable SEND at 16 connections >= 5x the aiosmtpd peer",
                "peer not run",
                ">= 5x",
                None,
            )
        )
    for label, row in (("unsigned", ours16), ("signed", signed16)):
        if row:
            section.targets.append(
                Target(
                    f"p99 SEND latency at 16 connections < 20 ms ({label})",
                    f"{fmt_ms(row[2])} ms",
                    "< 20 ms",
                    row[2] < 0.020,
                )
            )
    if ours16 and off16 and ours16[0]:
        section.notes.append(
            f"fsync off / durable at 16 connections: {off16[0] / ours16[0]:.2f}x throughput "
            "(what durability costs with group commit)"
        )
    d1, d16 = results.get(("ours, durable, unsigned", 1)), ours16
    if signed16 and ours16 and ours16[0]:
        section.notes.append(
            f"signed / unsigned at 16 connections: {signed16[0] / ours16[0]:.2f}x (signatures "
            "are verified in worker processes, off the loop thread; on a 2-core machine they "
            "compete with the loop and the load clients for the same cores)"
        )
    if d1 and d16 and d1[0]:
        section.notes.append(
            f"group commit: durable unsigned at 16 connections does {d16[0] / d1[0]:.2f}x the "
            "messages/s of 1 connection"
        )
    return section
