"""Saving attachments safely. The file name is the sender's word: strip any path, control
and bidi characters (a right-to-left override can disguise `gpj.exe` as `exe.jpg`), never
overwrite (pick a free name), never follow a link, and let the caller ask before writing a
dot-file (`.bashrc`). Plain module: no Textual."""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterator
from pathlib import Path

# Bidi embeddings, overrides, isolates and marks; other invisible format characters.
_BIDI = set("\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
MAX_NAME = 200


def safe_name(name: str) -> str:
    """A plain file name from a sender-supplied one."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(
        ch
        for ch in name
        if ch not in _BIDI and unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp")
    ).strip()
    if cleaned in ("", ".", ".."):
        cleaned = "attachment"
    if len(cleaned) > MAX_NAME:
        stem, dot, ext = cleaned.rpartition(".")
        if dot and stem and len(ext) <= 16:
            cleaned = stem[: MAX_NAME - len(ext) - 1] + "." + ext
        else:
            cleaned = cleaned[:MAX_NAME]
    return cleaned


def unhidden(name: str) -> str:
    """The name to use when the user declines a dot-file: `.bashrc` → `_bashrc`."""
    name = safe_name(name)
    return "_" + name.lstrip(".") if name.startswith(".") else name


def is_hidden(name: str) -> bool:
    """A dot-file: the caller asks before saving one."""
    return safe_name(name).startswith(".")


def candidates(name: str) -> Iterator[str]:
    """`name`, then `name (1).ext`, `name (2).ext`, …"""
    yield name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, dot, ext = name, "", ""
    n = 1
    while True:
        yield f"{stem} ({n}){dot}{ext}"
        n += 1


def save(directory: Path, name: str, data: bytes, *, limit: int = 1000) -> Path:
    """Write `data` into `directory` under a free, safe version of `name`; returns the path.
    Opened with O_EXCL|O_NOFOLLOW: an existing file or a planted link is never written."""
    directory = Path(directory)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    for index, candidate in enumerate(candidates(safe_name(name))):
        if index >= limit:
            break
        path = directory / candidate
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return path
    raise FileExistsError(f"no free name for {name} in {directory}")


def complete_path(text: str) -> str | None:
    """The completion of a path being typed (the longest common start of the names that
    fit, a directory gets its "/"), or None. `~` stays as typed."""
    if not text:
        return None
    expanded = os.path.expanduser(text)
    directory, slash, start = expanded.rpartition("/")
    base = Path(directory + slash) if slash else Path(".")
    try:
        names = sorted(e.name for e in os.scandir(base) if e.name.startswith(start))
    except OSError:
        return None
    if not start.startswith("."):
        names = [n for n in names if not n.startswith(".")]
    if not names:
        return None
    common = os.path.commonprefix(names)  # noqa: RUF071 - names, not paths: characters are wanted
    if len(names) == 1 and (base / common).is_dir():
        common += "/"
    if common == start:
        return None
    return text + common[len(start) :]


def open_with(command: str, path: Path, *, timeout: float = 60.0) -> int | None:
    """Open `path` with the user's command (its last argument; no shell). Blocking: call
    from a worker. The exit status, None if it did not run."""
    import shlex
    import subprocess

    argv = [*shlex.split(command), str(path)]
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    return done.returncode
