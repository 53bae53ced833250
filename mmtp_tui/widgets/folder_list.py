"""The folder column: Inbox, Sent, Drafts, Archive, Trash with unread counts."""

from __future__ import annotations

from textual.widgets import OptionList
from textual.widgets.option_list import Option

from ..mailstore import FOLDERS


def folder_label(name: str, total: int, unread: int) -> str:
    if unread:
        return f"{name} ({unread})"
    return f"{name} [{total}]" if name == "Drafts" and total else name


class FolderList(OptionList):
    def __init__(self, *, id: str | None = None) -> None:
        # Folder names and counts are plain text (the Drafts count is in brackets).
        super().__init__(*[Option(name, id=name) for name in FOLDERS], id=id, markup=False)

    def show_counts(self, counts: dict[str, tuple[int, int]], current: str) -> None:
        """Relabel in place. Changing the highlight here would post a new highlight event,
        whose handler refreshes the view, which calls this again: a loop that never idles
        once two arrow keys arrive in one burst. So the highlight moves only when it must,
        and then without an event."""
        for index, name in enumerate(FOLDERS):
            total, unread = counts.get(name, (0, 0))
            label = folder_label(name, total, unread)
            if str(self.get_option_at_index(index).prompt) != label:
                self.replace_option_prompt_at_index(index, label)
        wanted = FOLDERS.index(current) if current in FOLDERS else self.highlighted
        if wanted is not None and wanted != self.highlighted:
            with self.prevent(OptionList.OptionHighlighted):
                self.highlighted = wanted
