"""The SQLite store's files on disk: readable by the server's user only."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

log = logging.getLogger("mmtp.store")


def make_private(path: Path) -> None:
    """Create the database file 0600, or make an existing one (and its -wal and -shm) 0600
    with a warning: stored mail is for its recipients only. SQLite creates -wal and -shm
    with the database file's mode."""
    if not path.exists():
        # On failure sqlite3 says why it cannot open it, in its own words, just below.
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return
    for item in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = item.stat().st_mode & 0o777
            if mode & 0o077:
                item.chmod(0o600)
                log.warning("%s was mode %o (other users could read mail); now 0600", item, mode)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("%s is readable by other users and could not be made 0600: %s", item, exc)
