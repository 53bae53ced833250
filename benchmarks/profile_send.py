"""Where the server's time goes under SEND load: py-spy on the server subprocess.

    python benchmarks/profile_send.py [--connections 16] [--signed] [--fsync-off] [--top 25]
                                      [--database sqlite|postgres] [--workers 1]

Starts the server as run.py does, drives it with the same closed-loop SEND load and samples
the server process with py-spy (``pip install py-spy``; needs ptrace rights, e.g. root).
Prints the functions with the largest inclusive and self share of the samples. With
``--database postgres`` the server stores into a PostgreSQL cluster started for the run
(fsync on, as bench_storage.py starts it); with ``--workers 2``, the first server process
is the one sampled.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_send import ALICE, register_keys  # noqa: E402
from common import mmtp_server, scratch_dir  # noqa: E402
from loadgen import Job, run_load  # noqa: E402


def summarize(raw: Path, top: int) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1] + ")"
            if " (" in f
            else f
            for f in stack.split(";")
        ]
        for name in set(frames):
            inclusive[name] += count
        own[frames[-1]] += count
    lines = [f"{total} samples", "", "inclusive:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--per-connection", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--signed", action="store_true")
    parser.add_argument("--fsync-off", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--idle",
        action="store_true",
        help="sample waits too (a round trip to PostgreSQL is a wait in recv, not CPU)",
    )
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy not found: pip install py-spy", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        extra: dict[str, object] = {"workers": args.workers}
        if args.database == "postgres":
            tests = HERE.parent / "tests"
            if str(tests) not in sys.path:
                sys.path.insert(0, str(tests))
            from postgres_server import HOW_TO_GET_ONE, find_bindir, running_postgres

            bindir = find_bindir()
            if bindir is None:
                print(HOW_TO_GET_ONE, file=sys.stderr)
                return 2
            extra["database"] = stack.enter_context(
                running_postgres(bindir, fsync=not args.fsync_off)
            )
        srv = stack.enter_context(
            mmtp_server(
                "profile",
                difficulty=8,
                fsync=not args.fsync_off,
                allow_plain_auth=True,
                extra=extra,
            )
        )
        out = stack.enter_context(scratch_dir("profile-out"))
        keys = register_keys(srv.port)
        # one mailbox for the whole run: --per-connection sets how full it gets
        job = Job("mmtp", srv.port, 0, args.per_connection, args.seconds, sender=ALICE)
        if args.signed:
            job.signing_key = keys[ALICE]
        else:  # authenticated as alice on each connection instead
            job.auth_key = keys[ALICE]
        raw = out / "server.raw"
        # Idle samples (the server waiting in select) are left out by py-spy, so sampling
        # from before the clients' set-up to after the load sees only the work.
        spy_proc = subprocess.Popen(
            [
                spy,
                "record",
                "-p",
                str(srv.pid),
                "-d",
                "600",
                "-r",
                "500",
                "-f",
                "raw",
                "-o",
                str(raw),
                "--nonblocking",
                *(["--idle"] if args.idle else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            result = run_load(job, args.connections, 2)
        finally:
            spy_proc.send_signal(signal.SIGINT)
            try:
                spy_proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy_proc.kill()
                spy_proc.wait()
        print(
            f"{result.requests} SENDs in {result.elapsed:.2f} s = "
            f"{result.requests / result.elapsed:,.0f}/s, errors {result.errors}"
        )
        if raw.exists():
            print(summarize(raw, args.top))
        else:
            print("py-spy wrote nothing (timed part too short?)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
