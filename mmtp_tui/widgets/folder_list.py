"""The folder column: Inbox, Sent, Drafts, Archive, Trash with unread counts."""

from __future__ import annotations

from textual.widgets import OptionList
from textual.widgets.option_list import Option

from ..mailstore import FOLDERS


class FolderList(OptionList):
    def show_counts(self, counts: dict[str, tuple[int, int]], current: str) -> None:
        highlighted = self.highlighted
        self.clear_options()
        for name in FOLDERS:
            total, unread = counts.get(name, (0, 0))
            label = (
                f"{name} ({unread})"
                if unread
                else (f"{name} [{total}]" if name == "Drafts" and total else name)
            )
            self.add_option(Option(label, id=name))
        self.highlighted = FOLDERS.index(current) if current in FOLDERS else highlighted
