"""The folder column: Inbox, Sent, Drafts, Outbox, Archive, Trash, then the user's own
folders, with unread counts."""

from __future__ import annotations

from textual.widgets import OptionList
from textual.widgets.option_list import Option

from ..mailstore import FOLDERS


def folder_label(name: str, total: int, unread: int) -> str:
    if unread:
        return f"{name} ({unread})"
    return f"{name} [{total}]" if name in ("Drafts", "Outbox") and total else name


class FolderList(OptionList):
    def __init__(self, *, id: str | None = None) -> None:
        # Folder names and counts are plain text (the Drafts count is in brackets).
        super().__init__(*[Option(name, id=name) for name in FOLDERS], id=id, markup=False)

    def show_counts(
        self,
        counts: dict[str, tuple[int, int]],
        current: str,
        names: list[str] | None = None,
    ) -> None:
        """Relabel in place. Changing the highlight here would post a new highlight event,
        whose handler refreshes the view, which calls this again: a loop that never idles
        once two arrow keys arrive in one burst. So the highlight moves only when it must,
        and then without an event."""
        names = list(names or FOLDERS)
        if [self.get_option_at_index(i).id for i in range(self.option_count)] != names:
            with self.prevent(OptionList.OptionHighlighted):
                self.clear_options()
                self.add_options([Option(name, id=name) for name in names])
        for index, name in enumerate(names):
            total, unread = counts.get(name, (0, 0))
            label = folder_label(name, total, unread)
            if str(self.get_option_at_index(index).prompt) != label:
                self.replace_option_prompt_at_index(index, label)
        wanted = names.index(current) if current in names else self.highlighted
        if wanted is not None and wanted != self.highlighted:
            with self.prevent(OptionList.OptionHighlighted):
                self.highlighted = wanted
