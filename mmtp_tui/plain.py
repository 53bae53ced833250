"""Text from senders, servers and key files made safe for a terminal, for the screens and the
`mmtp` command alike. Plain module: no Textual (the command must start fast).

Rich and Textual drop only BEL, BS, VT, FF and CR: an ESC from a subject would reach the
terminal as an escape sequence, and a bidi override would disguise what follows it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Rich is not imported at run time here: the command starts fast
    from rich.text import Text

# Control characters (C0 but tab and newline, DEL, C1) and bidi marks, embeddings, overrides
# and isolates.
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, *, newlines: bool = False) -> str:
    """`text` safe to print on a terminal (each unsafe character a visible U+FFFD); on one
    line unless `newlines`."""
    text = _UNSAFE.sub("\ufffd", text)
    return text if newlines else text.replace("\n", " ").replace("\t", " ")


def printable_text(text: Text) -> Text:
    """`text` with its unsafe characters made visible, its styles kept: each one becomes one
    U+FFFD, so every span still covers the same characters."""
    text.plain = printable(text.plain, newlines=True)
    return text
