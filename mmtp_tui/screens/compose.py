"""Compose: To (completing from contacts), Subject, Body, attachments, encrypt/sign; sending
runs encrypt → sign → HashCash (child process, live bar) → transmit; Esc cancels."""

from __future__ import annotations

import mimetypes
import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from textual import events, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.widgets import Footer, Header, Input, Label, TextArea

from mmtp_proto.errors import LocalError, MMTPError
from mmtp_proto.mint_process import MintJob
from mmtp_proto.packet import make_attachment

from .. import keymap
from ..bindings import bindings
from ..messages import Done, Failed, MintProgress, Stage
from ..session import AccountSession, error_text
from ..widgets.send_progress import SendProgress
from ..widgets.tick import Tick
from .dialogs import PromptScreen

POLL_SECONDS = 0.12  # ~8 progress updates a second


class ComposeScreen(Screen[bool]):
    BINDINGS = bindings(keymap.COMPOSE)

    def __init__(
        self,
        session: AccountSession,
        *,
        to: str = "",
        subject: str = "",
        body: str = "",
        type: str = "SEND",
        in_reply_to: str | None = None,
        references: list[str] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        draft_id: int | None = None,
    ) -> None:
        super().__init__()
        self.session = session
        self.initial = (to, subject, body)
        self.type = type
        self.in_reply_to = in_reply_to
        self.references = references or []
        self.attachments: list[dict[str, Any]] = list(attachments or [])
        self.draft_id = draft_id
        self.job: MintJob | None = None
        self.sending = False

    def compose(self) -> ComposeResult:
        to, subject, body = self.initial
        known = [c.email for c in self.session.contacts.all()]
        known += self.session.store.contacts(self.session.account.name)
        yield Header()
        with Vertical(id="compose-form"):
            with Horizontal(classes="row"):
                yield Label("To ", classes="field-label")
                yield Input(
                    to,
                    placeholder="(name)%(domain)",
                    id="to",
                    suggester=SuggestFromList(sorted(set(known)), case_sensitive=False),
                )
            with Horizontal(classes="row"):
                yield Label("Subj", classes="field-label")
                yield Input(subject, id="subject")
            with Horizontal(classes="row", id="toggles"):
                yield Tick("Encrypt", value=True, id="encrypt")
                yield Tick("Sign", value=True, id="sign")
                yield Label("", id="attachments")
            yield TextArea(body, id="body", soft_wrap=True, show_line_numbers=False)
            yield SendProgress(id="progress")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.title = f"Compose — from {self.session.address}"
        self.sub_title = {"REPLY": "reply", "FORWARD": "forward"}.get(self.type, "new message")
        self._show_attachments()
        self.query_one("#progress", SendProgress).display = False
        if self.initial[0]:
            self.query_one("#body", TextArea).focus()
            self.query_one("#body", TextArea).move_cursor((0, 0))
        else:
            self.query_one("#to", Input).focus()

    # Tab goes To → Subject → Body → Encrypt → Sign, as in other mail clients, although the
    # toggles stand above the body on screen.
    _TAB_ORDER: ClassVar[dict[tuple[str, str], str]] = {
        ("tab", "subject"): "#body",
        ("tab", "body"): "#encrypt",
        ("shift+tab", "encrypt"): "#body",
        ("shift+tab", "body"): "#subject",
        ("tab", "sign"): "#to",
        ("shift+tab", "to"): "#sign",
    }

    def on_key(self, event: events.Key) -> None:
        focused = self.focused
        target = self._TAB_ORDER.get((event.key, focused.id or "")) if focused else None
        if target is not None:
            event.prevent_default()
            event.stop()
            self.query_one(target).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in To or Subject moves on (To → Subject → Body)."""
        event.stop()
        target = "#subject" if event.input.id == "to" else "#body"
        self.query_one(target).focus()

    def _show_attachments(self) -> None:
        names = ", ".join(str(a.get("filename")) for a in self.attachments)
        self.query_one("#attachments", Label).update(f"📎 {names}" if names else "")

    def _fields(self) -> tuple[str, str, str]:
        return (
            self.query_one("#to", Input).value.strip(),
            self.query_one("#subject", Input).value,
            self.query_one("#body", TextArea).text,
        )

    # ------------------------------------------------------------------ actions

    def action_send(self) -> None:
        if self.sending:
            return
        to, subject, body = self._fields()
        if not to:
            self.notify("Who is it for? Fill in To.", severity="error")
            self.query_one("#to", Input).focus()
            return
        self.sending = True
        progress = self.query_one("#progress", SendProgress)
        progress.display = True
        progress.stage("Connecting…")
        self.send_worker(
            to,
            subject,
            body,
            self.query_one("#encrypt", Tick).value,
            self.query_one("#sign", Tick).value,
        )

    @work(thread=True, exclusive=True, exit_on_error=False, group="send")
    def send_worker(self, to: str, subject: str, body: str, encrypt: bool, sign: bool) -> None:
        session = self.session
        try:
            with session.connected() as client:
                self.post_message(Stage("Encrypting and signing…" if encrypt else "Signing…"))
                sealed = session.seal(
                    client,
                    to,
                    subject,
                    body,
                    encrypt=encrypt,
                    sign=sign,
                    attachments=self.attachments or None,
                    type=self.type,
                    in_reply_to=self.in_reply_to,
                    references=self.references or None,
                )
                packet = sealed.packet
                job = MintJob(
                    packet["recipient"], sealed.bits, packet["verification"]["messageHash"]
                )
                self.job = job.start()
                try:
                    while (stamp := job.poll(POLL_SECONDS)) is None:
                        self.post_message(
                            MintProgress(job.tries, job.expected, job.rate, job.eta())
                        )
                finally:
                    job.close()
                self.post_message(MintProgress(job.tries, job.expected, job.rate, 0))
                self.post_message(Stage("Sending…"))
                result = session.transmit(client, sealed, stamp)
            self.post_message(Done("sent", result))
        except (MMTPError, LocalError, OSError, ValueError) as exc:
            self.post_message(Failed(error_text(exc), what="send"))

    def on_stage(self, message: Stage) -> None:
        self.query_one("#progress", SendProgress).stage(message.text)

    def on_mint_progress(self, message: MintProgress) -> None:
        self.query_one("#progress", SendProgress).mint(
            message.tries, message.expected, message.rate, message.eta
        )

    def on_done(self, message: Done) -> None:
        if message.what == "sent":
            self.query_one("#progress", SendProgress).finish()
            if self.draft_id is not None:
                self.session.store.delete_draft(self.draft_id)
            result = message.value
            how = ", ".join(
                w for w, on in (("encrypted", result.encrypted), ("signed", result.signed)) if on
            )
            self.notify(f"Sent to {result.packet['recipient']} ({how or 'in clear'}).")
            self.dismiss(True)

    def on_failed(self, message: Failed) -> None:
        self.sending = False
        self.job = None
        progress = self.query_one("#progress", SendProgress)
        progress.display = False
        if "cancelled" in message.text:
            self.notify("Sending cancelled; the message is still here.")
        else:
            self.notify(
                f"Not sent: {message.text}", title="Send failed", severity="error", timeout=15
            )

    def action_cancel(self) -> None:
        if self.sending and self.job is not None:
            self.job.cancel()
            return
        if self.sending:
            return
        to, subject, body = self._fields()
        if (to, subject, body) != self.initial and (subject.strip() or body.strip()):
            self.action_save_draft()
        self.dismiss(False)

    def action_save_draft(self) -> None:
        to, subject, body = self._fields()
        self.draft_id = self.session.store.save_draft(
            self.session.account.name,
            to,
            subject,
            body,
            in_reply_to=self.in_reply_to,
            refs=self.references,
            draft_id=self.draft_id,
        )
        self.initial = (to, subject, body)
        self.notify("Draft saved.")

    def action_editor(self) -> None:
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        area = self.query_one("#body", TextArea)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
            fh.write(area.text)
            path = Path(fh.name)
        try:
            with self.app.suspend():
                subprocess.call([*shlex.split(editor), str(path)])
            area.load_text(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            self.notify(f"Could not run {editor}: {exc}", severity="error")
        finally:
            path.unlink(missing_ok=True)

    def action_attach(self) -> None:
        def add(path_text: str | None) -> None:
            if not path_text:
                return
            path = Path(path_text).expanduser()
            try:
                data = path.read_bytes()
            except OSError as exc:
                self.notify(f"Cannot attach {path}: {exc.strerror}", severity="error")
                return
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            self.attachments.append(make_attachment(path.name, data, kind))
            self._show_attachments()

        self.app.push_screen(PromptScreen("Attach which file?", placeholder="path"), add)
