"""HashCash mint rate: ours on one core and all cores, a bare hashlib loop, OpenSSL's SHA-256.

All Python rows hash the same stamp prefix (see bench_hashcash.py, whose loops are reused).
OpenSSL's row is ``openssl speed -evp sha256 -bytes 64``: whole 64-byte messages hashed
per second (each is two compressions with the padding block, plus init/final), which is the
yardstick the target names. A mint candidate costs one ``copy()`` and one compression
(prefix aligned on a block boundary).

Minter(processes=n) is reported twice: from its call (spawn start-up of the children included,
as bench_hashcash.py does) and at steady state (rate over the progress reports after the
children's first one), which is what the scaling target is about.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import shutil
import subprocess
import time

from bench_hashcash import MESSAGE_HASH, RESOURCE, UNREACHABLE, naive, timed_mint
from common import Section, Target, fmt_rate

from mmtp_proto.hashcash import MintCancelled, mint
from mmtp_proto.minter import Minter


def openssl_rate(seconds: int) -> tuple[float | None, str]:
    """64-byte SHA-256 messages per second from `openssl speed`, or (None, why not)."""
    exe = shutil.which("openssl")
    if exe is None:
        return None, "openssl not installed: row skipped"
    command = [exe, "speed", "-seconds", str(seconds), "-evp", "sha256", "-bytes", "64"]
    try:
        out = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds * 5 + 30
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"openssl speed failed: {exc}"
    for line in out.splitlines():
        match = re.match(r"\s*sha256\s+([0-9.]+)k\s*$", line)
        if match:
            return float(match.group(1)) * 1000 / 64, " ".join(command[1:])
    return None, "could not parse openssl speed output"


def steady_parallel(seconds: float, processes: int, now: int, rand: str) -> tuple[float, float]:
    """(rate from the call, steady-state rate after the first progress report)."""
    points: list[tuple[float, int]] = []

    def progress(tries: int) -> None:
        points.append((time.perf_counter(), tries))

    started = time.perf_counter()
    with contextlib.suppress(MintCancelled):
        Minter(processes=processes).mint(
            RESOURCE,
            UNREACHABLE,
            MESSAGE_HASH,
            now=now,
            rand=rand,
            progress=progress,
            cancel=lambda: time.perf_counter() - started >= seconds,
        )
    whole = points[-1][1] / (points[-1][0] - started)
    live = [p for p in points if p[1] > 0]
    steady = whole
    if len(live) >= 3:
        # skip the first report (children still starting), measure from the second on
        (t0, n0), (t1, n1) = live[1], live[-1]
        if t1 > t0:
            steady = (n1 - n0) / (t1 - t0)
    return whole, steady


def _naive_child(prefix: bytes, seconds: float, barrier, out) -> None:
    barrier.wait(timeout=60)
    out.put(naive(prefix, seconds))


def control_parallel(prefix: bytes, seconds: float, processes: int) -> float:
    """Sum of the bare hashlib loop run in `processes` processes at once: a control for
    how much parallel CPU the machine gives right now (shared machines give less)."""
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    children = [
        ctx.Process(target=_naive_child, args=(prefix, seconds, barrier, out), daemon=True)
        for _ in range(processes)
    ]
    try:
        for child in children:
            child.start()
        return sum(out.get(timeout=seconds + 120) for _ in children)
    finally:
        for child in children:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()
                child.join()


def run(quick: bool, log=print) -> Section:
    section = Section(
        "HashCash mint rate (SHA-256 candidates per second)",
        ["loop", "procs", "hashes/s", "per core", "vs hashlib loop", "vs OpenSSL"],
    )
    seconds = 1.0 if quick else 3.0
    procs = os.cpu_count() or 1
    now = int(time.time())
    token = mint(RESOURCE, 0, MESSAGE_HASH, now=now)["token"]
    rand = token.split(":")[5]
    prefix = token.rsplit(":", 1)[0].encode() + b":"

    log("  HashCash: openssl speed...")
    ossl, how = openssl_rate(1 if quick else 3)
    log("  HashCash: hashlib loop, mint, Minter(processes=n)...")
    bare = naive(prefix, seconds)
    one = timed_mint(mint, seconds, now=now, rand=rand)
    whole, steady = steady_parallel(seconds + 1.0, procs, now, rand)
    control = control_parallel(prefix, seconds, procs) if procs > 1 else bare

    def row(name: str, n: int, value: float) -> list[str]:
        versus = f"{value / n / ossl:.0%}/core" if ossl else "-"
        return [name, str(n), fmt_rate(value), fmt_rate(value / n), f"{value / bare:.2f}x", versus]

    if ossl:
        section.rows.append(
            [
                "openssl speed sha256, 64-byte messages",
                "1",
                fmt_rate(ossl),
                fmt_rate(ossl),
                f"{ossl / bare:.2f}x",
                "100%/core",
            ]
        )
    section.rows.append(row("bare hashlib: sha256(prefix + str(i))", 1, bare))
    section.rows.append(row("mint (one core)", 1, one))
    section.rows.append(row("Minter(processes=n), start-up included", procs, whole))
    section.rows.append(row("Minter(processes=n), steady state", procs, steady))
    section.rows.append(row(f"control: bare hashlib loop x{procs} processes", procs, control))
    section.notes.append(f"OpenSSL: {how}")
    section.notes.append(
        f"control: the bare loop in {procs} processes at once does {control / bare:.2f}x the "
        "bare loop alone; well under the core count means the machine's other work took "
        "the cores, which caps Minter(processes=n) the same way"
    )
    section.notes.append(f"prefix {len(prefix)} bytes ({len(prefix) % 64} past a 64-byte block)")

    if ossl:
        share = one / ossl
        section.targets.append(
            Target(
                "mint per core >= 40% of OpenSSL's 64-byte SHA-256 rate",
                f"{share:.0%} ({fmt_rate(one)} vs {fmt_rate(ossl)}/s)",
                ">= 40%",
                share >= 0.40,
            )
        )
    else:
        section.targets.append(Target("mint per core >= 40% of OpenSSL", how, ">= 40%", None))
    scaling = steady / one if one else 0.0
    section.targets.append(
        Target(
            f"Minter(processes={procs}) >= 1.8x one core (steady state)",
            f"{scaling:.2f}x (with start-up: {whole / one:.2f}x)",
            ">= 1.8x",
            scaling >= 1.8,
        )
    )
    return section
