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
