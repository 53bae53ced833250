"""Server memory per idle connection: VmRSS before and after opening 1,000 plain connections.

Each connection reads its greeting (so the server has accepted and answered it) and then
stays open and silent. The benchmark raises its own open-files soft limit to fit them.
"""

from __future__ import annotations

import contextlib
import socket
import time

from common import HOST, Section, Target, mmtp_server, raise_nofile, rss_kib


def _open_idle(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=10)
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed an idle connection at once")
        data += chunk
    return sock


def run(quick: bool, log=print) -> Section:
    section = Section(
        "Memory per idle connection",
        ["connections", "server RSS MiB", "delta MiB", "KiB per connection"],
    )
    wanted = 1000
    limit = raise_nofile(wanted + 256)
    if limit < wanted + 64:
        section.notes.append(f"open-files limit {limit} too low; using fewer connections")
        wanted = max(10, limit - 64)
    steps = (0, 250, 500, wanted) if not quick else (0, wanted)
    with mmtp_server("memory", difficulty=8, fsync=True) as srv:
        socks: list[socket.socket] = []
        try:
            # one connection first, so code paths and buffers of a first client are loaded
            with contextlib.closing(_open_idle(srv.port)):
                pass
            time.sleep(0.3)
            base = rss_kib(srv.pid)
            for step in steps:
                log(f"  memory: {step} idle connections...")
                while len(socks) < step:
                    socks.append(_open_idle(srv.port))
                time.sleep(0.3)
                now = rss_kib(srv.pid)
                per = (now - base) / step if step else 0.0
                section.rows.append(
                    [str(step), f"{now / 1024:.1f}", f"{(now - base) / 1024:.1f}", f"{per:.1f}"]
                )
            final = rss_kib(srv.pid)
            if srv.proc.poll() is not None:
                raise RuntimeError("the server died while connections were opened")
        finally:
            for sock in socks:
                sock.close()
    section.targets.append(
        Target(
            f"server RSS with {len(steps) and steps[-1]:,} idle connections under 100 MB",
            f"{final / 1024:.1f} MiB ({(final - base) / steps[-1]:.1f} KiB per connection)",
            "< 100 MB",
            final * 1024 < 100_000_000,
        )
    )
    return section
