"""New mail outside the app: the terminal bell, a desktop notification through the terminal
(OSC 9, as iTerm2, WezTerm, Windows Terminal and kitty read it; OSC 777, as VTE terminals
and foot do; both pass over SSH), and an optional hook command. Plain module: no Textual.

The notice carries only a count (never a sender's words: they could smuggle escape codes);
the hook runs without a shell, with the count in its environment.
"""

from __future__ import annotations

import os
import shlex
import subprocess

HOOK_TIMEOUT = 30.0


def _clean(text: str) -> str:
    """No control characters: an escape or BEL would end the sequence early."""
    return "".join(ch for ch in text if ch.isprintable())


def osc_sequence(mode: str, title: str, body: str) -> str:
    """The escape sequence for `mode` ("osc9", "osc777"; "" for "off")."""
    title, body = _clean(title), _clean(body)
    if mode == "osc9":
        return f"\x1b]9;{title}: {body}\x07"
    if mode == "osc777":
        return f"\x1b]777;notify;{title.replace(';', ',')};{body.replace(';', ',')}\x07"
    return ""


def new_mail_text(count: int) -> str:
    return f"{count} new message{'s' * (count != 1)}"


def run_hook(command: str, count: int, *, account: str = "") -> int | None:
    """Run the user's hook (blocking; call from a worker): `command` split like a shell
    would, run without one, MMTP_NEW_MAIL=count and MMTP_ACCOUNT in its environment.
    Returns its exit status, None if it could not run."""
    argv = shlex.split(command)
    if not argv:
        return None
    env = {**os.environ, "MMTP_NEW_MAIL": str(count), "MMTP_ACCOUNT": account}
    try:
        done = subprocess.run(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=HOOK_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.returncode
