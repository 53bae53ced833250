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
    Key("main.reply_all", "e", "reply_all", "Reply all", show=False),
    Key("main.forward", "f", "forward", "Forward"),
    Key("main.fetch", "F,f5", "fetch", "Fetch"),
    Key("main.search", "slash", "search", "Search"),
    Key("main.toggle_read", "u", "toggle_read", "Read/unread", show=False),
    # Not in the footer: all that is shown must fit 80 columns (help and palette list it).
    Key("main.move", "m", "move", "Move", show=False),
    Key("main.archive", "a", "move_to('Archive')", "Archive", show=False),
    Key("main.delete", "d,delete", "delete", "Delete"),
    Key("main.flag", "asterisk", "toggle_flag", "Flag/star", show=False),
    Key("main.tag", "t", "toggle_tag", "Tag (select)", show=False),
    Key("main.untag", "T", "clear_tags", "Untag all", show=False),
    Key("main.undo", "U", "undo", "Undo delete/move", show=False),
    Key("main.all_read", "M", "mark_all_read", "Mark all read", show=False),
    Key("main.sort", "o", "cycle_sort", "Sort (date/sender/subject)", show=False),
    Key("main.collapse", "z", "toggle_collapse", "Collapse threads", show=False),
    Key("main.save_attachment", "s", "save_attachment", "Save attachments", show=False),
    Key("main.open_attachment", "v", "open_attachment", "Open attachment", show=False),
    Key("main.folder_new", "N", "new_folder", "New folder", show=False),
    Key("main.folder_rename", "f2", "rename_folder", "Rename folder", show=False),
    Key("main.folder_delete", "X", "delete_folder", "Delete folder", show=False),
    Key("main.all_inboxes", "I", "all_inboxes", "All inboxes", show=False),
    Key("main.keys", "K", "keys", "Keys"),
    Key("main.accounts", "A", "accounts", "Accounts", show=False),
    # vi-style movement: j/k a line (in the reader: scroll), n/p a message wherever the
    # focus is, space/b a page of the reader (space at its end: the next message),
    # g g the first message, G the last, ] and [ the next/previous thread.
    Key("main.down", "j", "move_down", "Down (j)", show=False),
    Key("main.up", "k", "move_up", "Up (k)", show=False),
    Key("main.next", "n", "next_message", "Next message", show=False),
    Key("main.previous", "p", "previous_message", "Previous message", show=False),
    Key("main.page_down", "space", "page_down", "Page down / next", show=False),
    Key("main.page_up", "b", "page_up", "Page up", show=False),
    Key("main.first", "g", "first_chord", "First message (g g)", show=False),
    Key("main.last", "G", "last_message", "Last message", show=False),
    Key("main.thread_next", "right_square_bracket", "next_thread", "Next thread", show=False),
    Key(
        "main.thread_previous",
        "left_square_bracket",
        "previous_thread",
        "Previous thread",
        show=False,
    ),
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
    Key("compose.detach", "ctrl+x", "detach", "Remove att.", show=False, priority=True),
    Key("compose.signature", "ctrl+g", "signature", "Add signature", show=False, priority=True),
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
    "asterisk": "*",
    "right_square_bracket": "]",
    "left_square_bracket": "[",
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
