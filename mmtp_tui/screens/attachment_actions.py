"""Attachments from the main screen: save them (safe names, asking before a dot-file),
open one with the user's opener."""

from __future__ import annotations

import tempfile
from pathlib import Path

from textual import work

from mmtp_proto.errors import MMTPError
from mmtp_proto.packet import decode_attachment

from .. import attachments
from ..messages import (
    AttachmentOpened,
)
from ..session import error_text
from .dialogs import ChoiceScreen, ConfirmScreen, PromptScreen
from .mail_view import MailView


class AttachmentActions(MailView):
    def action_save_attachment(self) -> None:
        message = self.selected()
        if message is None or not message.attachments:
            self.notify("This message has no attachments.", severity="warning")
            return
        default = str(Path.home() / "Downloads")

        def write(target: Path, keep_dots: bool) -> None:
            saved: list[str] = []
            try:
                target.mkdir(parents=True, exist_ok=True)
                for att in message.attachments:
                    raw = str(att.get("filename") or "attachment")
                    name = attachments.safe_name(raw) if keep_dots else attachments.unhidden(raw)
                    saved.append(attachments.save(target, name, decode_attachment(att)).name)
            except (OSError, ValueError, MMTPError) as exc:
                self.notify(f"Could not save: {error_text(exc)}", severity="error")
                return
            self.notify(f"Saved {', '.join(saved)} in {target}.")

        def save(directory: str | None) -> None:
            if not directory:
                return
            target = Path(directory).expanduser()
            hidden = [
                attachments.safe_name(str(a.get("filename") or ""))
                for a in message.attachments
                if attachments.is_hidden(str(a.get("filename") or ""))
            ]
            if not hidden:
                write(target, True)
                return
            self.app.push_screen(
                ConfirmScreen(
                    f"{', '.join(hidden)}: a hidden file (its name starts with a dot, like "
                    ".bashrc). Save it under that name? (No: saved as _name)",
                    yes="Keep the dot",
                ),
                lambda yes: write(target, bool(yes)),
            )

        self.app.push_screen(PromptScreen("Save the attachments into folder:", default), save)

    def action_open_attachment(self) -> None:
        message = self.selected()
        if message is None or not message.attachments:
            self.notify("This message has no attachments.", severity="warning")
            return
        if len(message.attachments) == 1:
            self._open_attachment(message.attachments[0])
            return
        choices = [
            (str(i), attachments.safe_name(str(a.get("filename") or "attachment")))
            for i, a in enumerate(message.attachments)
        ]
        self.app.push_screen(
            ChoiceScreen("Open which attachment?", choices),
            lambda i: self._open_attachment(message.attachments[int(i)]) if i else None,
        )

    def _open_attachment(self, att: dict) -> None:
        """Into a private temporary folder (0700) under a safe name, then the open command."""
        try:
            folder = Path(tempfile.mkdtemp(prefix="mmtp-open-"))
            path = attachments.save(
                folder,
                attachments.unhidden(str(att.get("filename") or "attachment")),
                decode_attachment(att),
            )
        except (OSError, ValueError, MMTPError) as exc:
            self.notify(f"Could not open: {error_text(exc)}", severity="error")
            return
        self.open_worker(path)

    @work(thread=True, exit_on_error=False, group="open")
    def open_worker(self, path: Path) -> None:
        command = self.app.settings.open_command or "xdg-open"  # type: ignore[attr-defined]
        self.post_message(AttachmentOpened(path.name, attachments.open_with(command, path)))

    def on_attachment_opened(self, message: AttachmentOpened) -> None:
        if message.status is None:
            self.notify(
                f"Could not run the open command for {message.name} (open_command in tui.toml).",
                severity="error",
            )
        elif message.status:
            self.notify(
                f"The open command ended with status {message.status} for {message.name}.",
                severity="warning",
            )
