"""The peer for the SEND benchmark: aiosmtpd storing each message durably in a Maildir.

Run as a script with the benchmark's own venv (benchmarks/.env, created and filled with
aiosmtpd by :func:`ensure_env` when missing):

    benchmarks/.env/bin/python benchmarks/peer_smtp.py --port PORT --maildir DIR

Each DATA is written the Maildir way, durably: write ``tmp/NAME``, fsync it, rename it into
``new/``, fsync ``new/``; only then ``250``. The store runs in the event loop's default thread
pool (as a careful aiosmtpd handler would, so one connection's fsync does not stall the
others); ``--inline`` stores in the event loop instead.

The script imports nothing but the standard library and aiosmtpd; the helpers below that the
benchmark uses (:func:`ensure_env`, :func:`peer_server`) import the rest lazily.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENV = HERE / ".env"
ENV_PYTHON = ENV / "bin" / "python"


class MaildirHandler:
    def __init__(self, root: Path, inline: bool) -> None:
        self.root = root
        self.inline = inline
        for sub in ("tmp", "new", "cur"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self._names = itertools.count()
        self._host = "bench"

    def store(self, data: bytes) -> str:
        name = f"{time.time_ns()}.P{os.getpid()}Q{next(self._names)}.{self._host}"
        tmp = self.root / "tmp" / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, self.root / "new" / name)
        dir_fd = os.open(self.root / "new", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return name

    async def handle_DATA(self, server, session, envelope) -> str:
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8")
        if self.inline:
            self.store(data)
        else:
            await asyncio.get_running_loop().run_in_executor(None, self.store, data)
        return "250 Message accepted for delivery"


async def _serve(host: str, port: int, maildir: Path, inline: bool) -> None:
    from aiosmtpd.smtp import SMTP

    handler = MaildirHandler(maildir, inline)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="peer.bench", data_size_limit=10 * 1024 * 1024),
        host,
        port,
        backlog=1024,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening on {host}:{port}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="aiosmtpd + durable Maildir (benchmark peer)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", type=Path, required=True)
    parser.add_argument("--inline", action="store_true", help="store in the event loop")
    args = parser.parse_args()
    asyncio.run(_serve(args.host, args.port, args.maildir, args.inline))


# --------------------------------------------------------------------------- for run.py


def ensure_env(log=print) -> str | None:
    """Make benchmarks/.env with aiosmtpd if needed; the aiosmtpd version, or None."""
    probe = [str(ENV_PYTHON), "-c", "import aiosmtpd; print(aiosmtpd.__version__)"]
    if ENV_PYTHON.exists():
        found = subprocess.run(probe, capture_output=True, text=True, timeout=60)
        if found.returncode == 0:
            return found.stdout.strip()
    log("creating benchmarks/.env with aiosmtpd (first run only)...")
    try:
        if not ENV_PYTHON.exists():
            subprocess.run([sys.executable, "-m", "venv", str(ENV)], check=True, timeout=300)
        subprocess.run(
            [str(ENV_PYTHON), "-m", "pip", "install", "-q", "aiosmtpd"],
            check=True,
            timeout=300,
        )
        found = subprocess.run(probe, capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        log(f"could not set up the aiosmtpd peer: {exc}")
        return None
    return found.stdout.strip()


@contextlib.contextmanager
def peer_server(inline: bool = False):
    """Run the peer; yields its port. Stopped (TERM, then KILL) on the way out."""
    from common import HOST, free_port, scratch_dir, stop_process, wait_for_port

    with scratch_dir("peer") as root:
        port = free_port()
        log = root / "peer.log"
        command = [
            str(ENV_PYTHON),
            str(Path(__file__).resolve()),
            "--host",
            HOST,
            "--port",
            str(port),
            "--maildir",
            str(root / "Maildir"),
        ]
        if inline:
            command.append("--inline")
        with open(log, "wb") as log_file:
            proc = subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        try:
            wait_for_port(port, proc, 30.0, log)
            yield port
        finally:
            stop_process(proc)


if __name__ == "__main__":
    main()
