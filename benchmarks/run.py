"""Run every benchmark section, print a table and write benchmarks/RESULTS.md.

    python benchmarks/run.py [--quick] [--only SECTION ...] [--output FILE]

Sections: mint (HashCash), send (durable SEND vs aiosmtpd), storage (SEND on SQLite and
PostgreSQL, one worker and two), mailbox (RECEIVE, REQUEST_PUBLIC_KEY, AUTH), pgp (OpenPGP
operations), memory (idle connections), relay (a.test -> b.test against local delivery), tui
(the app's idle CPU and keypress latency while minting).
``--quick`` runs each with small counts (about a minute in all); the full run takes about
five minutes. Servers run as subprocesses on 127.0.0.1 and are always stopped. The machine
may be shared: comparisons are made side by side in the same run and reported as ratios.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from common import Section  # noqa: E402
from report import console, machine_lines, markdown  # noqa: E402

SECTIONS = ("mint", "send", "storage", "mailbox", "pgp", "memory", "relay", "tui")

PREAMBLE = (
    "Written by `benchmarks/run.py`. The machine may be shared with other work while this "
    "runs, so absolute figures move from run to run; every comparison below ran side by side "
    "in the same run and is given as a ratio. Servers run as subprocesses on 127.0.0.1 "
    "(plain listener; TLS only where named); the clients run in the benchmark process or in "
    "spawned client processes on the same 2-core machine, so the client side competes with "
    "the server for the CPUs."
)


def _load(name: str):
    if name == "mint":
        import bench_mint as module
    elif name == "send":
        import bench_send as module
    elif name == "storage":
        import bench_storage as module
    elif name == "mailbox":
        import bench_mailbox as module
    elif name == "pgp":
        import bench_pgp as module
    elif name == "relay":
        import bench_relay as module
    elif name == "tui":
        import bench_tui as module
    else:
        import bench_memory as module
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument(
        "--output",
        type=Path,
        default=HERE / "RESULTS.md",
        help="where to write the Markdown report (default benchmarks/RESULTS.md)",
    )
    args = parser.parse_args(argv)
    command = "python benchmarks/run.py" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:])
    )
    machine = machine_lines(command)
    for key, value in machine:
        print(f"{key + ':':24}{value}", flush=True)

    def log(message: str) -> None:
        print(message, flush=True)

    sections: list[Section] = []
    failed = False
    started = time.monotonic()
    for name in args.only or SECTIONS:
        log(f"[{name}]")
        t0 = time.monotonic()
        try:
            section = _load(name).run(args.quick, log=log)
        except Exception as exc:
            failed = True
            traceback.print_exc()
            section = Section(f"{name} (FAILED)", ["error"], [[f"{type(exc).__name__}: {exc}"]])
        section.seconds = time.monotonic() - t0
        sections.append(section)
    total = time.monotonic() - started

    print()
    print(console(sections, machine))
    print(f"\ntotal {total:.0f} s")
    text = markdown(sections, machine, PREAMBLE + f" Total run time {total:.0f} s.")
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
