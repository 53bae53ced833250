"""RECEIVE of a 10,000-message mailbox, REQUEST_PUBLIC_KEY round trips, full AUTH round trips.

One server (difficulty 0 so the mailbox fills fast, fsync off since only reads are timed,
AUTH allowed on plain as well as over TLS). The mailbox is filled by pipelined SENDs of 2 KB
messages; RECEIVE then pages through it 1,000 at a time, as ``Client.receive_all`` does.
"""

from __future__ import annotations

import time

from common import HOST, Section, fmt_ms, fmt_rate, mmtp_server, percentile, timed_loop
from loadgen import Job, authenticate, build_packets

BOB = "(bob)%(example.com)"


def run(quick: bool, log=print) -> Section:
    from mmtp_proto import pgp
    from mmtp_proto.canonical import auth_challenge
    from mmtp_proto.client import Client, Connection

    section = Section(
        "Mailbox and key directory",
        ["operation", "samples", "per second", "p50 ms", "note"],
    )
    mailbox = 2_000 if quick else 10_000
    seconds = 0.5 if quick else 2.0
    count = 200 if quick else 3000

    with mmtp_server("mailbox", difficulty=0, fsync=False, tls=True, allow_plain_auth=True) as srv:
        bob = pgp.generate_key(BOB, "Bob", algorithm="ed25519")
        conn = Connection(HOST, srv.port, tls=False)
        try:
            conn.request("REGISTER_KEY", {"email": BOB, "publicKey": bob.public.armored})
            authenticate(conn, BOB, bob.armored)  # bob fills his own mailbox (SPEC §3)
            log(f"  mailbox: filling {mailbox:,} messages...")
            packets = build_packets(
                Job("mmtp", srv.port, 1, 0, 0.0, sender=BOB, difficulty=0), mailbox, 1
            )
            batch_seconds = []
            for start in range(0, mailbox, 500):
                t0 = time.perf_counter()
                conn.pipeline([("SEND", {"packet": p}) for p in packets[start : start + 500]])
                batch_seconds.append(time.perf_counter() - t0)
            fill_seconds = sum(batch_seconds)
        finally:
            conn.close()
        section.notes.append(
            f"filling the mailbox: {mailbox:,} pipelined SENDs (difficulty 0, fsync off) in "
            f"{fill_seconds:.2f} s = {fmt_rate(mailbox / fill_seconds)} msg/s on one connection"
        )
        first, last = sum(batch_seconds[:2]), sum(batch_seconds[-2:])
        section.rows.append(
            [
                "pipelined SEND, first 1,000 into the empty mailbox",
                "1000",
                fmt_rate(1000 / first),
                "-",
                "same connection, same packet shape",
            ]
        )
        section.rows.append(
            [
                f"pipelined SEND, last 1,000 (mailbox at {mailbox - 1000:,}+)",
                "1000",
                fmt_rate(1000 / last),
                "-",
                f"{first / last:.2f}x the rate into the empty mailbox",
            ]
        )

        client = Client(HOST, srv.port, srv.tls_port or 0, use_tls=False, verify="insecure")
        client.add_private_key(bob, BOB)
        client.connect()
        try:
            client.auth(BOB)

            def receive_all() -> None:
                got = client.receive_all(BOB)
                if got.count != mailbox:
                    raise RuntimeError(f"RECEIVE returned {got.count} of {mailbox} messages")

            log("  mailbox: RECEIVE...")
            n, elapsed, samples = timed_loop(receive_all, count=2 if quick else 5, seconds=10.0)
            best = min(samples)
            section.rows.append(
                [
                    f"RECEIVE whole mailbox ({mailbox:,} msgs, pages of 1,000)",
                    str(n),
                    f"{fmt_rate(mailbox / best)} msg/s",
                    fmt_ms(percentile(samples, 50)),
                    f"best {best:.3f} s per mailbox, {fmt_rate(n / elapsed)} mailboxes/s",
                ]
            )

            log("  mailbox: REQUEST_PUBLIC_KEY...")
            conn = client.connection
            assert conn is not None
            n, elapsed, samples = timed_loop(
                lambda: conn.request("REQUEST_PUBLIC_KEY", {"email": BOB}),
                count=count,
                seconds=seconds,
            )
            section.rows.append(
                [
                    "REQUEST_PUBLIC_KEY round trip",
                    str(n),
                    fmt_rate(n / elapsed),
                    fmt_ms(percentile(samples, 50)),
                    "one connection, sequential",
                ]
            )
        finally:
            client.disconnect()

        for label, port, tls in (("plain", srv.port, False), ("TLS", srv.tls_port, True)):
            log(f"  mailbox: AUTH round trips ({label})...")

            def auth_round_trip(port: int = port, tls: bool = tls) -> None:
                c = Connection(HOST, port, tls=tls, verify="insecure")
                try:
                    challenge = auth_challenge(
                        str(c.greeting["server"]), str(c.greeting["nonce"]), BOB
                    )
                    c.request(
                        "AUTH", {"email": BOB, "signature": pgp.sign_detached(challenge, bob)}
                    )
                finally:
                    c.close()

            auth_round_trip()
            n, elapsed, samples = timed_loop(auth_round_trip, count=count // 4, seconds=seconds)
            section.rows.append(
                [
                    f"full AUTH round trip ({label}, Ed25519)",
                    str(n),
                    fmt_rate(n / elapsed),
                    fmt_ms(percentile(samples, 50)),
                    "connect + greeting + sign + AUTH + close",
                ]
            )
    return section
