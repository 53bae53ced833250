"""HashCash minting throughput: our mint against a naive loop, one core and all cores.

    python benchmarks/bench_hashcash.py [--seconds 2] [--processes N]

Every row hashes the same stamp prefix (same resource, date, content hash and rand), so the
numbers compare the search loops, not the inputs. Rows:

- naive: ``hashlib.sha256(prefix + str(i).encode()).digest()`` for i = 0, 1, ... (bare: no
  check of the result at all, which flatters it slightly);
- copy idiom: hash the prefix once and ``.copy()`` it per candidate, ``str(i)`` per try;
- mint: ``mmtp_proto.hashcash.mint`` at an unreachable difficulty, stopped by ``cancel``
  (its block-boundary prefix, precomputed counter tails, bytes comparison and checkpoints);
- mint (unaligned rand): the same with a 16-character rand that leaves the prefix mid-block;
- Minter(processes=n): mint in ``--processes`` child processes (default all), start-up
  of the children included.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import platform
import sys
import time
from collections.abc import Callable

from mmtp_proto.hashcash import MintCancelled, expected_tries, mint
from mmtp_proto.minter import Minter

RESOURCE = "(bob)%(example.com)"
MESSAGE_HASH = hashlib.sha256(b"benchmark content").hexdigest()
UNREACHABLE = 64  # bits: no stamp will be found, so a run lasts exactly as long as we let it


def naive(prefix: bytes, seconds: float) -> float:
    sha256 = hashlib.sha256
    tries = 0
    started = time.perf_counter()
    while True:
        for i in range(tries, tries + 10_000):
            sha256(prefix + str(i).encode()).digest()
        tries += 10_000
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return tries / elapsed


def copy_idiom(prefix: bytes, seconds: float) -> float:
    copy = hashlib.sha256(prefix).copy
    tries = 0
    started = time.perf_counter()
    while True:
        for i in range(tries, tries + 10_000):
            h = copy()
            h.update(str(i).encode())
            h.digest()
        tries += 10_000
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return tries / elapsed


def timed_mint(run: Callable[..., dict], seconds: float, **kwargs) -> float:
    """Hashes per second of a mint function, from its own progress reports."""
    seen = [0]
    started = time.perf_counter()
    with contextlib.suppress(MintCancelled):
        run(
            RESOURCE,
            UNREACHABLE,
            MESSAGE_HASH,
            progress=seen.append,
            cancel=lambda: time.perf_counter() - started >= seconds,
            **kwargs,
        )
    return seen[-1] / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per row (default 2)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    now = int(time.time())
    token = mint(RESOURCE, 0, MESSAGE_HASH, now=now)["token"]
    rand = token.split(":")[5]
    prefix = token.rsplit(":", 1)[0].encode() + b":"
    unaligned_rand = rand[:16]

    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"prefix {len(prefix)} bytes ({len(prefix) % 64} past a 64-byte block), rand {rand}")
    print(f"{args.seconds:g} s per row\n")

    same = {"now": now, "rand": rand}
    rows: list[tuple[str, int, float]] = []
    rows.append(("naive sha256(prefix + str(i))", 1, naive(prefix, args.seconds)))
    rows.append(("copy idiom, str(i) per try", 1, copy_idiom(prefix, args.seconds)))
    rows.append(("mint", 1, timed_mint(mint, args.seconds, **same)))
    unaligned = {"now": now, "rand": unaligned_rand}
    rows.append(("mint (unaligned rand)", 1, timed_mint(mint, args.seconds, **unaligned)))
    parallel = timed_mint(Minter(processes=args.processes).mint, args.seconds, **same)
    rows.append(("Minter(processes=n)", args.processes, parallel))

    base = rows[0][2]
    one_core_mint = rows[2][2]
    print(f"{'loop':32} {'procs':>5} {'hashes/s':>12} {'per core':>12} {'vs naive':>9}")
    for name, procs, rate in rows:
        print(f"{name:32} {procs:5d} {rate:12,.0f} {rate / procs:12,.0f} {rate / base:8.2f}x")
    print(f"\nMinter(processes=n) scaling: {parallel / one_core_mint:.2f}x mint on one core")
    for bits in (20, 22, 24):
        print(
            f"expected time at {bits} bits: mint {expected_tries(bits) / one_core_mint:6.2f} s, "
            f"Minter(processes=n) {expected_tries(bits) / parallel:6.2f} s"
        )


if __name__ == "__main__":
    sys.exit(main())
