"""Durable SEND at 16 connections on each storage backend, side by side in one run: SQLite
(the default) and PostgreSQL, one worker and two (`--workers 2`), unsigned and signed, next
to the aiosmtpd peer of the send section (unsigned: SMTP has no signatures).

PostgreSQL is a cluster of its own started for this section (`initdb` + `pg_ctl`, Unix
socket, fsync on, synchronous_commit on), so both backends make every acknowledged SEND
durable. Skipped with a note when no PostgreSQL is installed.

Each timed run also says where the machine's CPU went (`proc_cpu.Accounts`): how busy the
cores were, and the CPU per acknowledged message of the servers' loops, their OpenPGP and
delivery children, the PostgreSQL cluster, the load clients and everything else.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from bench_send import ALICE, _summary, recipient, register_keys, register_same
from common import Section, Target, fmt_ms, fmt_rate, mmtp_server
from loadgen import Job, run_load
from proc_cpu import Accounts, Usage, cmdline

TESTS = Path(__file__).resolve().parent.parent / "tests"
SPREAD = "PostgreSQL, 8 mailboxes"
PEER = "aiosmtpd + Maildir fsync"
ROLES = ("loop", "pgp", "pg", "clients", "other")
OURS = ROLES[:-1]


def _server_role(pid: int) -> str:
    """The supervisor and each worker run server_cli; the rest of a server's tree is its
    forkserver's children: the OpenPGP workers and the delivery process."""
    return "loop" if "mmtp_proto.server_cli" in cmdline(pid) else "pgp"


def _postmaster(url: str) -> int | None:
    """The cluster's postmaster, from the lock file PostgreSQL keeps by its Unix socket
    (its first line is the pid)."""
    for host in parse_qs(urlsplit(url).query).get("host", []):
        for lock in Path(host).glob(".s.PGSQL.*.lock"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                return int(lock.read_text().split()[0])
    return None


def _per_message(usage: Usage | None, count: int) -> list[str]:
    if usage is None:
        return ["-"] * (2 + len(ROLES))
    cells = [f"{usage.busy:.0%}", f"{usage.share(*OURS):.0%}"]
    for role in ROLES:
        cpu = usage.cpu.get(role, 0.0)
        cells.append(f"{cpu / count * 1e6:,.0f}" if count else "-")
    return cells


def run(quick: bool, log=print) -> Section:
    section = Section(
        "Durable SEND by storage backend (16 connections, 2 KB bodies, difficulty 8)",
        [
            "backend",
            "workers",
            "signed",
            "msgs",
            "msg/s",
            "p50 ms",
            "p99 ms",
            "vs SQLite",
            "busy",
            "ours",
            *(f"{role} µs" for role in ROLES),
        ],
    )
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    from postgres_server import HOW_TO_GET_ONE, find_bindir, running_postgres

    bindir = find_bindir()
    if bindir is None:
        section.notes.append(f"skipped: {HOW_TO_GET_ONE}")
        return section
    import peer_smtp

    peer_version = peer_smtp.ensure_env(log)
    if peer_version is None:
        section.notes.append("aiosmtpd peer skipped: could not create benchmarks/.env")
    else:
        section.notes.append(
            f"{PEER}: aiosmtpd {peer_version}, the send section's peer (fsync of the file and "
            "of new/ before 250), at the same 16 connections; its CPU is not split by role"
        )
    conns, per_conn = 16, (40 if quick else 250)
    seconds = 4.0 if quick else 10.0
    results: dict[tuple[str, int, bool], tuple[float, float, float, int]] = {}
    usages: dict[tuple[str, int, bool], Usage | None] = {}
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(running_postgres(bindir, fsync=True))
        servers = {}
        for backend in ("SQLite", "PostgreSQL"):
            for workers in (1, 2):
                extra: dict[str, object] = {"workers": workers}
                if backend == "PostgreSQL":
                    # Each server its own schema: every run starts from the same state.
                    schema = f"bench_w{workers}"
                    import psycopg

                    with psycopg.connect(url, autocommit=True) as admin:
                        admin.execute(f"CREATE SCHEMA {schema}")
                    extra["database"] = f"{url}&options=-csearch_path%3D{schema}"
                servers[(backend, workers)] = stack.enter_context(
                    mmtp_server(
                        f"storage-{backend}-{workers}",
                        difficulty=8,
                        extra=extra,
                        allow_plain_auth=True,
                    )
                )
        keys = None
        mailbox = 0
        for server in servers.values():
            if keys is None:
                keys = register_keys(server.port, recipients=8)
            else:
                register_same(server.port, keys)
        assert keys is not None
        # Every server's tree (the idle ones' too), the cluster's, and this process's: the
        # load clients are its children.
        roots = {server.pid: _server_role for server in servers.values()}
        postmaster = _postmaster(url)
        if postmaster is None:
            section.notes.append("no postmaster pid found: PostgreSQL's CPU is in other")
        else:
            roots[postmaster] = lambda pid: "pg"
        roots[os.getpid()] = lambda pid: "clients"
        meter = Accounts(roots)
        peer_port = stack.enter_context(peer_smtp.peer_server()) if peer_version else None
        if peer_port:
            job = Job("smtp", peer_port, 0, per_conn, seconds)
            job.recipient = recipient(0)
            log(f"  SEND: {PEER}...")
            result = run_load(job, conns, 2)
            throughput, p50, p99 = _summary(result)
            results[(PEER, 1, False)] = (throughput, p50, p99, result.requests)
        for signed in (False, True):
            for (backend, workers), server in servers.items():
                job = Job("mmtp", server.port, 0, per_conn, seconds, sender=ALICE)
                if signed:
                    job.signing_key = keys[ALICE]
                else:  # authenticated as alice on each connection instead
                    job.auth_key = keys[ALICE]
                job.recipient = recipient(mailbox % 8)
                mailbox += 1
                log(f"  SEND: {backend}, {workers} worker(s), signed={signed}...")
                result = run_load(job, conns, 2, meter)
                usages[(backend, workers, signed)] = meter.usage
                if result.errors:
                    section.notes.append(
                        f"{backend} x{workers} signed={signed}: {result.errors} errors, "
                        f"first: {result.first_error}"
                    )
                throughput, p50, p99 = _summary(result)
                results[(backend, workers, signed)] = (throughput, p50, p99, result.requests)
        # What a server with many users sees: the same signed load spread over 8 mailboxes,
        # so two workers' turns need not wait for one mailbox's lock.
        for workers in (1, 2):
            server = servers[("PostgreSQL", workers)]
            job = Job("mmtp", server.port, 0, per_conn, seconds, sender=ALICE)
            job.signing_key = keys[ALICE]
            job.spread = tuple(recipient(k) for k in range(8))
            log(f"  SEND: PostgreSQL, {workers} worker(s), signed, 8 mailboxes...")
            result = run_load(job, conns, 2, meter)
            usages[(SPREAD, workers, True)] = meter.usage
            throughput, p50, p99 = _summary(result)
            results[(SPREAD, workers, True)] = (throughput, p50, p99, result.requests)
    for (backend, workers, signed), (throughput, p50, p99, count) in results.items():
        base = results.get(("SQLite", 1, signed))
        versus = f"{throughput / base[0]:.2f}x" if base and base[0] else "-"
        section.rows.append(
            [
                backend,
                str(workers),
                "yes" if signed else "no",
                str(count),
                fmt_rate(throughput),
                fmt_ms(p50),
                fmt_ms(p99),
                versus,
                *_per_message(usages.get((backend, workers, signed)), count),
            ]
        )
    cores = os.cpu_count() or 1
    section.notes.append(
        f"CPU over each timed run (/proc): busy = the machine's {cores} cores, all but idle "
        "and iowait; ours = the part of the cores this benchmark's processes used (the four roles "
        "before other); then CPU µs per acknowledged message by role: loop = the mmtp-server "
        "processes (supervisor, workers' loops; the idle servers' too), pgp = their children "
        "(OpenPGP worker pool, delivery process), pg = the PostgreSQL cluster (every process "
        "under the postmaster), clients = the load-client processes and the benchmark "
        "process, other = busy time none of those used (other work on the machine)"
    )
    for signed in (False, True):
        label = "signed" if signed else "unsigned"
        sqlite1 = results.get(("SQLite", 1, signed))
        pg1 = results.get(("PostgreSQL", 1, signed))
        pg2 = results.get(("PostgreSQL", 2, signed))
        if sqlite1 and pg1 and sqlite1[0]:
            ratio = pg1[0] / sqlite1[0]
            section.targets.append(
                Target(
                    f"PostgreSQL within 70% of SQLite at one worker ({label})",
                    f"{ratio:.2f}x",
                    ">= 0.70x",
                    ratio >= 0.7,
                )
            )
        spread1, spread2 = results.get((SPREAD, 1, True)), results.get((SPREAD, 2, True))
        if signed and spread1 and spread2 and spread1[0]:
            section.notes.append(
                f"PostgreSQL, signed, load spread over 8 mailboxes: 2 workers "
                f"{spread2[0] / spread1[0]:.2f}x one worker"
            )
        if signed and pg1 and pg2 and pg1[0]:
            ratio = pg2[0] / pg1[0]
            section.notes.append(
                _headroom(
                    usages.get(("PostgreSQL", 1, True)),
                    usages.get(("PostgreSQL", 2, True)),
                    pg1[3],
                    pg2[3],
                    ratio,
                    cores,
                )
            )
            section.targets.append(
                Target(
                    "2 workers >= 1.7x one worker on signed SENDs (PostgreSQL)",
                    f"{ratio:.2f}x",
                    ">= 1.7x",
                    ratio >= 1.7,
                )
            )
    section.notes.append(
        "the 2-core machine also runs the client processes, so two workers compete with the "
        "load generator for the same CPUs"
    )
    section.notes.append(
        "where PostgreSQL's time goes (profile_send.py --database postgres --idle; issue 9): "
        "each statement is a wait for the backend, a process of its own (0.1 ms when it is "
        "running, milliseconds when it must first be scheduled on a busy machine). A round "
        "of SENDs waits twice (the key with the version row, COMMIT; the quota is checked "
        "in the write): "
        "the SEND writes are pipelined and their results come back with the COMMIT; a "
        "signed SEND's request and its continuation are in two rounds. Whether two workers "
        "can gain is in the busy and ours columns: at one worker the benchmark's own "
        "processes already use the share of the cores shown"
    )
    return section


def _headroom(
    one: Usage | None, two: Usage | None, count1: int, count2: int, ratio: float, cores: int
) -> str:
    """What the signed PostgreSQL run at one worker left for a second one, from its CPU."""
    if one is None or not count1:
        return "signed PostgreSQL, one worker: no CPU measured"
    ours, other = one.share(*OURS), one.share("other")
    per_message = sum(one.cpu.get(role, 0.0) for role in OURS) / count1 * 1e6
    text = (
        f"signed PostgreSQL, one worker: the {cores} cores were {one.busy:.0%} busy, "
        f"{ours:.0%} with this benchmark's processes ({per_message:,.0f} µs of CPU per "
        f"message) and {other:.0%} with other work on the machine. "
    )
    ceiling = 1 / max(one.busy, 0.01)
    text += (
        f"With {max(0.0, 1 - one.busy):.0%} of the cores idle, two workers at the same CPU "
        f"per message can reach at most 1/{one.busy:.2f} = {ceiling:.2f}x one worker ("
        + ("short of 1.7x" if ceiling < 1.7 else "room for 1.7x")
        + ")"
    )
    if other >= 0.1 and ours > 0:
        text += f"; 1/{ours:.2f} = {1 / ours:.2f}x had the benchmark the cores to itself (" + (
            "still short of 1.7x)" if 1 / ours < 1.7 else "enough for 1.7x)"
        )
    if two is not None and count2:
        per_message2 = sum(two.cpu.get(role, 0.0) for role in OURS) / count2 * 1e6
        text += (
            f". Two workers measured {ratio:.2f}x, the cores {two.busy:.0%} busy, "
            f"{per_message2:,.0f} µs of CPU per message ({per_message2 / per_message - 1:+.0%})"
        )
    return text
