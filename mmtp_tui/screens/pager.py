"""A read-only page of text: what a mailcap `copiousoutput` command printed for an
attachment. The text is a program's output about a sender's file: plain Text, never markup."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ..plain import printable


class PagerScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Close", id="pager.close"),
        Binding("j,down", "scroll(1)", "Down", show=False, id="pager.down"),
        Binding("k,up", "scroll(-1)", "Up", show=False, id="pager.up"),
        Binding("space,pagedown", "page(1)", "Page down", show=False, id="pager.page_down"),
        Binding("b,pageup", "page(-1)", "Page up", show=False, id="pager.page_up"),
    ]

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.heading = title
        self.text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help", id="pager"):
            yield Static(Text(printable(self.heading), style="bold"), id="pager-title")
            yield Static(Text(printable(self.text, newlines=True)), id="pager-text")

    def action_close(self) -> None:
        self.dismiss(None)

    def action_scroll(self, lines: int) -> None:
        self.query_one("#pager", VerticalScroll).scroll_relative(y=lines, animate=False)

    def action_page(self, pages: int) -> None:
        view = self.query_one("#pager", VerticalScroll)
        view.scroll_relative(y=pages * max(1, view.size.height - 1), animate=False)
