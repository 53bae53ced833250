"""The message list: badges, sender, subject (replies indented under their parent), date."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.text import Text
from textual.widgets import DataTable

from ..mailstore import Draft, Queued, StoredMessage
from ..plain import printable

BADGES = 6  # tag, flag, unread, encrypted, signature, integrity


def badges(message: StoredMessage, *, tagged: bool = False) -> Text:
    text = Text()
    text.append("+" if tagged else " ", style="bold magenta")
    text.append("★" if message.flagged else " ", style="bold yellow")
    if message.unreadable:
        text.append("●  ⚠" if not message.read else "   ⚠", style="bold red")
        return text
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


def short_date(timestamp: int, *, year: bool = True) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime(
        "%Y-%m-%d %H:%M" if year else "%m-%d %H:%M"
    )


def column_widths(width: int) -> tuple[int, int, int, bool]:
    """(from, subject, date, date with year) for a table `width` cells wide: the subject
    gets what is left, nothing needs a horizontal scrollbar."""
    year = width >= 100
    date = 16 if year else 11
    room = max(20, width - BADGES - date - 2 * 4 - 2)  # badges, date, cell padding, scrollbar
    sender = min(26, max(10, room * 2 // 5))
    return sender, max(8, room - sender), date, year


class MessageList(DataTable):
    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = False
        self.messages: list[StoredMessage] = []
        self.outgoing = False
        self.drafts: list[Draft] | None = None
        self._widths: tuple[int, int, int, bool] | None = None
        self._who = "From"
        self.tagged: set[int] = set()
        self.outbox: list[Queued] | None = None

    def on_resize(self) -> None:
        if self._widths != column_widths(self.size.width):
            if self.drafts is not None:
                self.show_drafts(self.drafts)
            elif self.outbox is not None:
                self.show_outbox(self.outbox)
            else:
                self.show(self.messages, outgoing=self.outgoing)

    def show_outbox(self, queued: list[Queued]) -> None:
        """What waits to be sent (row keys "o<id>")."""
        self.outbox, self.drafts = queued, None
        self._columns("To")
        self.clear()
        for item in queued:
            state = "stamped" if item.packet is not None else "waiting"
            if item.recipients:
                state = f"{len(item.waiting())}/{len(item.recipients)} left"
            if item.last_error:
                state = "retry"
            self.add_row(
                Text("⏳"),
                Text(
                    printable(", ".join(item.outgoing.recipients())),
                    overflow="ellipsis",
                    no_wrap=True,
                ),
                Text(
                    printable(item.outgoing.subject or "(no subject)"),
                    overflow="ellipsis",
                    no_wrap=True,
                ),
                state,
                key=f"o{item.id}",
            )

    def show_drafts(self, drafts: list[Draft]) -> None:
        self.drafts, self.outbox = drafts, None
        self._columns("To")
        self.clear()
        for draft in drafts:
            self.add_row(
                "",
                Text(printable(draft.recipient), overflow="ellipsis", no_wrap=True),
                Text(printable(draft.subject or "(no subject)"), overflow="ellipsis", no_wrap=True),
                "draft",
                key=f"d{draft.id}",
            )

    def _columns(self, who: str = "From") -> bool:
        """(Re)make the columns for the current width; the date's year goes when narrow.
        `who`: the heading of the address column (Sent shows recipients: "To")."""
        widths = column_widths(self.size.width)
        if widths == self._widths and who == self._who:
            return widths[3]
        self._widths, self._who = widths, who
        sender, subject, date, year = widths
        self.clear(columns=True)
        self.add_column("", key="badges", width=BADGES)
        self.add_column(who, key="from", width=sender)
        self.add_column("Subject", key="subject", width=subject)
        self.add_column("Date (UTC)" if year else "UTC", key="date", width=date)
        return year

    def show(
        self,
        messages: list[StoredMessage],
        *,
        outgoing: bool = False,
        tagged: set[int] | None = None,
    ) -> None:
        selected = self.selected_id()
        self.messages, self.outgoing, self.drafts, self.outbox = messages, outgoing, None, None
        if tagged is not None:
            self.tagged = tagged
        year = self._columns("To" if outgoing else "From")
        self.clear()
        for message in messages:
            who = message.recipient if outgoing else message.sender
            subject = ("  " * message.depth + "↳ ") if message.depth else ""
            subject += message.subject or "(no subject)"
            if message.hidden_replies:
                subject += f" (+{message.hidden_replies})"
            if message.unreadable:  # the reason shows where the subject would be
                subject = f"⚠ unreadable: {message.problem or 'not an MMTP message'}"
            style = "bold" if not message.read else ""
            if message.id in self.tagged:
                style += " reverse"
            self.add_row(
                badges(message, tagged=message.id in self.tagged),
                Text(printable(who), style=style, overflow="ellipsis", no_wrap=True),
                Text(printable(subject), style=style, overflow="ellipsis", no_wrap=True),
                short_date(message.timestamp, year=year),
                key=str(message.id),
            )
        if selected is not None and str(selected) in self.rows:
            self.move_cursor(row=self.get_row_index(str(selected)))

    def selected_draft_id(self) -> int | None:
        """The draft under the cursor when drafts are shown (their row keys are "d<id>")."""
        if not self.row_count or self.drafts is None:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value or ""
        except Exception:
            return None
        return int(key[1:]) if key.startswith("d") and key[1:].isdigit() else None

    def selected_queued_id(self) -> int | None:
        """The Outbox entry under the cursor (row keys "o<id>")."""
        if not self.row_count or self.outbox is None:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value or ""
        except Exception:
            return None
        return int(key[1:]) if key.startswith("o") and key[1:].isdigit() else None

    def selected_id(self) -> int | None:
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:
            return None
        return int(key.value) if key.value and key.value.isdigit() else None
