"""`?`: every key binding with its id (remap ids in the config's [keymap])."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
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
    for title, keys in SECTIONS:
        table.add_row(f"[b]{title}[/b]", "", "")
        for key in keys:
            table.add_row(overrides.get(key.id, key.keys), key.description, key.id)
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close", id="help.close")
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help"):
            yield Static(
                "[b]mmtp-tui help[/b] — keys (remap by id under [keymap] in the config file); "
                "ctrl+p opens the command palette.\n"
            )
            yield Static(help_table(self.app.settings.keymap))  # type: ignore[attr-defined]

    def action_close(self) -> None:
        self.dismiss(None)
