"""Attachments from the main screen: save them (safe names, asking before a dot-file),
open one with the command the user's mailcap gives for its type, else the opener."""

from __future__ import annotations

import tempfile
from pathlib import Path

from textual import work
from textual.app import SuspendNotSupported
from textual.message import Message

from mmtp_proto.errors import MMTPError
from mmtp_proto.packet import decode_attachment

from .. import attachments, mailcaps
from ..messages import (
    AttachmentOpened,
)
from ..session import error_text
from .dialogs import ChoiceScreen, ConfirmScreen, PromptScreen
from .mail_view import MailView
from .pager import PagerScreen


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
                self.notify(
                    f"Could not save in {target}: {error_text(exc)}. Choose another folder (s).",
                    severity="error",
                )
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
        """Into a private temporary folder (0700) under a name built here, then the
        mailcap's command for its type, else the open command."""
        content_type = str(att.get("contentType") or "")
        try:
            folder = Path(tempfile.mkdtemp(prefix="mmtp-open-"))
            path = attachments.save(
                folder,
                mailcaps.temp_name(att.get("filename"), content_type),
                decode_attachment(att),
            )
        except (OSError, ValueError, MMTPError) as exc:
            self.notify(f"Could not open: {error_text(exc)}", severity="error")
            return
        self.open_worker(path, content_type)

    @work(thread=True, exit_on_error=False, group="open")
    def open_worker(self, path: Path, content_type: str = "") -> None:
        settings = self.app.settings  # type: ignore[attr-defined]
        entry = mailcaps.find(content_type) if settings.mailcap else None
        if entry is None:
            command = settings.open_command or "xdg-open"
            self.post_message(AttachmentOpened(path.name, attachments.open_with(command, path)))
            return
        command = mailcaps.command_for(entry, path, content_type)
        if entry.needsterminal and not entry.copiousoutput:
            self.app.call_from_thread(self._run_in_terminal, path.name, command)
            return
        status, output = mailcaps.run(command, capture=entry.copiousoutput)
        self.post_message(MailcapRan(path.name, command.line, status, output, entry.copiousoutput))

    def _run_in_terminal(self, name: str, command: mailcaps.Command) -> None:
        """A `needsterminal` entry gets the terminal; the app comes back after."""
        try:
            with self.app.suspend():
                status = mailcaps.run_in_terminal(command)
        except SuspendNotSupported:
            status = None
        self.post_message(MailcapRan(name, command.line, status, "", False))

    def on_mailcap_ran(self, message: MailcapRan) -> None:
        if message.status is None:
            self.notify(
                f"Could not run the mailcap command for {message.name}: {message.line}",
                severity="error",
                markup=False,
            )
            return
        if message.copious:
            self.app.push_screen(PagerScreen(f"{message.name} — {message.line}", message.output))
        if message.status:
            self.notify(
                f"The mailcap command ended with status {message.status} for {message.name}.",
                severity="warning",
                markup=False,
            )

    def on_attachment_opened(self, message: AttachmentOpened) -> None:
        if message.status is None:
            self.notify(
                f"Could not run the open command for {message.name} (open_command in tui.toml).",
                severity="error",
                markup=False,
            )
        elif message.status:
            self.notify(
                f"The open command ended with status {message.status} for {message.name}.",
                severity="warning",
                markup=False,
            )


class MailcapRan(Message):
    """A mailcap command finished: its exit status (None: it did not run), and for a
    `copiousoutput` entry what it printed."""

    def __init__(self, name: str, line: str, status: int | None, output: str, copious: bool):
        super().__init__()
        self.name, self.line, self.status = name, line, status
        self.output, self.copious = output, copious
