"""The message list: badges, sender, subject (replies indented under their parent), date."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.text import Text
from textual.widgets import DataTable

from ..mailstore import StoredMessage


def badges(message: StoredMessage) -> Text:
    text = Text()
    text.append("●" if not message.read else " ", style="bold cyan")
    text.append("E" if message.encrypted else " ", style="green")
    mark, style = {
        "verified": ("✓", "bold green"),
        "bad": ("✗", "bold red"),
        "unknown": ("?", "yellow"),
    }.get(message.signature, (" ", ""))
    text.append(mark, style=style)
    if not message.integrity_ok:
        text.append("!", style="bold red")
    return text


def short_date(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M")


class MessageList(DataTable):
    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = False
        self.add_column("", key="badges", width=4)
        self.add_column("From", key="from", width=22)
        self.add_column("Subject", key="subject")
        self.add_column("Date (UTC)", key="date", width=16)

    def show(self, messages: list[StoredMessage], *, outgoing: bool = False) -> None:
        selected = self.selected_id()
        self.clear()
        for message in messages:
            who = message.recipient if outgoing else message.sender
            subject = ("  " * message.depth + "↳ ") if message.depth else ""
            subject += message.subject or "(no subject)"
            style = "bold" if not message.read else ""
            self.add_row(
                badges(message),
                Text(who, style=style, overflow="ellipsis", no_wrap=True),
                Text(subject, style=style, overflow="ellipsis", no_wrap=True),
                short_date(message.timestamp),
                key=str(message.id),
            )
        if selected is not None and str(selected) in self.rows:
            self.move_cursor(row=self.get_row_index(str(selected)))

    def selected_id(self) -> int | None:
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:
            return None
        return int(key.value) if key.value and key.value.isdigit() else None
