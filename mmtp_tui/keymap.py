"""Every key binding as data: an id (remappable from the config's [keymap]), keys, the
action it runs, words for the footer and help. Screens turn these into Textual Bindings;
this module itself does not import Textual."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Key:
    id: str
    keys: str
    action: str
    description: str
    show: bool = True
    priority: bool = False


APP = (
    Key("app.help", "question_mark,f1", "help", "Help"),
    Key("app.quit", "ctrl+q", "quit", "Quit", priority=True),
    Key("app.theme", "ctrl+t", "toggle_theme", "Theme", show=False),
)

MAIN = (
    Key("main.compose", "c", "compose", "Compose"),
    Key("main.reply", "r", "reply", "Reply"),
    Key("main.reply_quote", "R", "reply_quote", "Reply+quote", show=False),
    Key("main.forward", "f", "forward", "Forward"),
    Key("main.fetch", "g", "fetch", "Fetch"),
    Key("main.search", "slash", "search", "Search"),
    Key("main.toggle_read", "u", "toggle_read", "Read/unread", show=False),
    # Not in the footer: all that is shown must fit 80 columns (help and palette list it).
    Key("main.move", "m", "move", "Move", show=False),
    Key("main.archive", "a", "move_to('Archive')", "Archive", show=False),
    Key("main.delete", "d,delete", "delete", "Delete"),
    Key("main.save_attachment", "s", "save_attachment", "Save att.", show=False),
    Key("main.keys", "k", "keys", "Keys"),
    Key("main.accounts", "A", "accounts", "Accounts", show=False),
    Key("main.folders", "1", "focus('folders')", "Folders", show=False),
    Key("main.list", "2", "focus('messages')", "List", show=False),
    Key("main.reader", "3", "focus('reader')", "Reader", show=False),
    Key("main.quit", "q", "app.quit", "Quit", show=False),
)

COMPOSE = (
    Key("compose.send", "ctrl+s", "send", "Send", priority=True),
    Key("compose.editor", "ctrl+e", "editor", "$EDITOR", priority=True),
    Key("compose.draft", "ctrl+d", "save_draft", "Save draft", priority=True),
    Key("compose.attach", "ctrl+o", "attach", "Attach", priority=True),
    Key("compose.cancel", "escape", "cancel", "Cancel/close", priority=True),
)

KEYS = (
    Key("keys.generate", "g", "generate", "New key"),
    Key("keys.passphrase", "p", "change_passphrase", "Passphrase"),
    Key("keys.export", "x", "export", "Export", show=False),
    Key("keys.register", "r", "register", "Register"),
    Key("keys.fetch", "f", "fetch_contact", "Fetch"),
    Key("keys.pin", "n", "pin_offered", "Pin new"),
    Key("keys.remove", "d,delete", "remove_contact", "Remove", show=False),
    Key("keys.close", "escape", "close", "Back"),
)

ALL = APP + MAIN + COMPOSE + KEYS


def validate(overrides: dict[str, str]) -> list[str]:
    """Problems with a [keymap] table, in words (unknown ids)."""
    known = {k.id for k in ALL}
    return [f"unknown binding id {name!r} in [keymap]" for name in overrides if name not in known]


_KEY_NAMES = {
    "question_mark": "?",
    "slash": "/",
    "escape": "Esc",
    "delete": "Del",
    "enter": "Enter",
    "space": "Space",
    "tab": "Tab",
}


def display_key(key: str) -> str:
    """One key as people write it: `question_mark` → `?`, `f1` → `F1`, `ctrl+q` → `ctrl+q`."""
    key = key.strip()
    if key in _KEY_NAMES:
        return _KEY_NAMES[key]
    if len(key) >= 2 and key[0] == "f" and key[1:].isdigit():
        return key.upper()
    return key


def display_keys(keys: str) -> str:
    """A binding's keys for the help screen and palette: `question_mark,f1` → `? F1`."""
    return " ".join(display_key(k) for k in keys.split(","))
