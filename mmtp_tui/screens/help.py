"""`?`: every key binding with its id (remap ids in the config's [keymap])."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from .. import keymap

SECTIONS = (
    ("Everywhere", keymap.APP),
    ("Main screen", keymap.MAIN),
    ("Compose", keymap.COMPOSE),
    ("Keys pane", keymap.KEYS),
)


def help_table(overrides: dict[str, str]) -> Table:
    table = Table(expand=True, box=None, padding=(0, 1))
    table.add_column("Keys", style="bold cyan", no_wrap=True)
    table.add_column("Does")
    table.add_column("Binding id", style="dim")
    # Cells are Text, not strings: Rich would read a remapped key like `[` as markup.
    for title, keys in SECTIONS:
        table.add_row(Text(title, style="bold"), Text(""), Text(""))
        for key in keys:
            table.add_row(
                Text(keymap.display_keys(overrides.get(key.id, key.keys))),
                Text(key.description),
                Text(key.id),
            )
    return table


def intro() -> Text:
    text = Text()
    text.append("mmtp-tui help", style="bold")
    text.append(
        " — keys (remap by id under [keymap] in the config file); "
        "ctrl+p opens the command palette.\n"
    )
    return text


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close", id="help.close")
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help"):
            yield Static(intro(), id="help-intro")
            yield Static(help_table(self.app.settings.keymap), id="help-table")  # type: ignore[attr-defined]

    def action_close(self) -> None:
        self.dismiss(None)
