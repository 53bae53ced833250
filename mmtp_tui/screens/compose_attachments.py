"""Compose's attachments: the line that lists them, the prompt that adds one by path (→
completes it) and the choice that removes one."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual.screen import Screen
from textual.widgets import Label

from mmtp_proto.outgoing import Outgoing
from mmtp_proto.packet import make_attachment

from ..plain import printable
from .dialogs import ChoiceScreen, PathSuggester, PromptScreen

# For a type checker the mixin is the Screen it is mixed into; at run time a plain class.
_Base = Screen[bool] if TYPE_CHECKING else object


class ComposeAttachments(_Base):
    """The attachment actions of :class:`~mmtp_tui.screens.compose.ComposeScreen` (a mixin
    for that Screen: it needs an ``#attachments`` Label and ``self.outgoing``)."""

    outgoing: Outgoing

    def _show_attachments(self) -> None:
        names = ", ".join(str(a.get("filename")) for a in self.outgoing.attachments)
        # Text, not markup: a file name is the user's, "[/x]" and all.
        self.query_one("#attachments", Label).update(
            Text(printable(f"📎 {names}") if names else "")
        )

    def action_attach(self) -> None:
        def add(path_text: str | None) -> None:
            if not path_text:
                return
            path = Path(path_text).expanduser()
            try:
                data = path.read_bytes()
            except OSError as exc:
                self.notify(f"Cannot attach {path}: {exc.strerror}", severity="error", markup=False)
                return
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            self.outgoing.attachments.append(make_attachment(path.name, data, kind))
            self._show_attachments()

        self.app.push_screen(
            PromptScreen(
                "Attach which file? (→ completes the path)",
                placeholder="path",
                suggester=PathSuggester(),
            ),
            add,
        )

    def action_detach(self) -> None:
        """Remove an attachment (asks which when there are several)."""
        atts = self.outgoing.attachments
        if not atts:
            self.notify("No attachments to remove.", severity="warning")
            return

        def remove(index: str | None) -> None:
            if index is None:
                return
            removed = atts.pop(int(index))
            self._show_attachments()
            self.notify(f"Removed {removed.get('filename')}.", markup=False)

        if len(atts) == 1:
            remove("0")
            return
        choices = [(str(i), str(a.get("filename"))) for i, a in enumerate(atts)]
        self.app.push_screen(ChoiceScreen("Remove which attachment?", choices), remove)
