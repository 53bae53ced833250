"""Listening sockets and the open-files limit: what the server needs from the OS at start."""

from __future__ import annotations

import errno
import logging
import resource
import socket

from .errors import LocalError

log = logging.getLogger("mmtp.server")


def open_listener(host: str, port: int) -> socket.socket:
    """A non-blocking listening socket with SO_REUSEADDR, or a LocalError saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        hint = ""
        if exc.errno == errno.EADDRINUSE:
            hint = " (another program is using that port: stop it or pick another port)"
        elif exc.errno == errno.EACCES:
            hint = " (ports below 1024 need privileges: use 8025/8026)"
        raise LocalError(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from None
    sock.setblocking(False)
    return sock


def raise_nofile_limit(wanted: int) -> None:
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open-files limit: %s", exc)
