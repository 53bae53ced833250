"""A real PostgreSQL server for the tests: `initdb` + `pg_ctl` into a temp dir, Unix socket only.

Started once per test session by the `postgres_url` fixture (conftest.py) and removed after.
PostgreSQL refuses to run as root, so under root (CI containers) the cluster is owned by and
run as the `postgres` system user that Debian's package creates.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

HOW_TO_GET_ONE = (
    "no PostgreSQL server found (initdb/pg_ctl); install Debian's `postgresql` package "
    "(`apt-get install -y postgresql`, as .ci/run does) to run the PostgreSQL tests"
)


def find_bindir() -> Path | None:
    """The directory holding initdb and pg_ctl: PATH first, then Debian's versioned dirs."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


def _runner() -> tuple[list[str], int | None, int | None]:
    """The prefix that runs a command as a user PostgreSQL accepts, and that user's ids."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(
            "running as root and there is no `postgres` user to run PostgreSQL as; "
            "install Debian's `postgresql` package, which creates it"
        ) from None
    return ["runuser", "-u", "postgres", "--"], entry.pw_uid, entry.pw_gid


@contextlib.contextmanager
def running_postgres(bindir: Path, *, fsync: bool = False) -> Iterator[str]:
    """Yield a libpq URL of a fresh cluster with an empty `mmtp` database.

    Without `fsync` (the tests) the cluster does not flush its WAL: fast, not durable. The
    benchmarks start it with fsync on, to compare durable commits with SQLite's.
    """
    prefix, uid, gid = _runner()
    root = Path(tempfile.mkdtemp(prefix="mmtp-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if uid is not None:
        for path in (root, sock):
            os.chown(path, uid, gid or -1)
    log = root / "server.log"

    def run(*args: str) -> None:
        result = subprocess.run(
            [*prefix, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {result.stderr.strip() or result.stdout}")

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "mmtp", "--no-sync")
        options = (
            f"-c listen_addresses='' -k {sock} -c fsync={'on' if fsync else 'off'} "
            "-c synchronous_commit=on "
            "-c max_connections=200"
        )
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
        import psycopg

        with psycopg.connect(f"postgresql://mmtp@/postgres?host={sock}", autocommit=True) as c:
            c.execute("CREATE DATABASE mmtp")
        yield f"postgresql://mmtp@/mmtp?host={sock}"
    finally:
        with contextlib.suppress(Exception):
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
