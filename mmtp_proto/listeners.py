"""Listening sockets, the open-files limit, the ready file and the data directory's mode:
the server's start, OS side."""

from __future__ import annotations

import errno
import json
import logging
import os
import resource
import socket
import stat
from pathlib import Path

from .atomic_file import write_atomically
from .errors import LocalError

log = logging.getLogger("mmtp.server")


def open_listener(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A non-blocking listening socket with SO_REUSEADDR, or a LocalError saying why not.

    With `reuse_port`, SO_REUSEPORT too: the workers of `--workers` listen on one port.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
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


def make_private_dir(path: Path) -> None:
    """The data directory holds mail: 0700. A wider existing one is tightened, with a warning
    (systemd's StateDirectory= and plain mkdir make 0755 ones)."""
    try:
        st_mode = path.stat().st_mode
        mode = st_mode & 0o777
        if st_mode & stat.S_ISVTX:
            # /tmp and its kind: closing it would break every other user of it.
            log.warning(
                "data directory %s is a shared directory (sticky bit); left as it is: "
                "give the server a directory of its own",
                path,
            )
        elif mode & 0o077:
            path.chmod(0o700)
            log.warning(
                "data directory %s was mode %o (others could list it); now 0700", path, mode
            )
    except OSError as exc:
        log.warning("could not make the data directory %s private (0700): %s", path, exc)


def write_ready_file(
    path: Path,
    *,
    plain: tuple[str, int] | None,
    tls: tuple[str, int] | None,
    fingerprint: str | None,
) -> None:
    """Say where the server listens, for whoever started it (`mmtp-server --ready-file`).

    Written to a temporary file in the same directory and renamed into place, so a reader
    polling for the file sees it whole or not at all. Mode 0600: only its owner reads it.
    """
    content = {
        "pid": os.getpid(),
        "plain": list(plain) if plain else None,
        "tls": list(tls) if tls else None,
        "fingerprint": fingerprint,
    }
    path = path.expanduser()
    try:
        write_atomically(path, (json.dumps(content) + "\n").encode("utf-8"), 0o600)
    except OSError as exc:
        raise LocalError(f"cannot write the ready file {path}: {exc.strerror or exc}") from None
