"""Messages workers post back to the UI (Textual side)."""

from __future__ import annotations

from typing import Any

from textual.message import Message


class Failed(Message):
    """A worker's job failed; `text` is for people."""

    def __init__(self, text: str, *, what: str = "") -> None:
        super().__init__()
        self.text, self.what = text, what


class Stage(Message):
    """A step of a longer job starts (connecting, encrypting, sending...)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, Stage)


class Done(Message):
    """A worker's job succeeded, with what it made."""

    def __init__(self, what: str, value: Any = None) -> None:
        super().__init__()
        self.what, self.value = what, value
