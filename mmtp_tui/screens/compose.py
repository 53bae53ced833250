"""Compose: To, Cc, Bcc (completing from contacts), Subject, Body, encrypt/sign, the
signature and $EDITOR; Esc cancels. Whatever was written is kept as a draft unless it was
sent. Sending (encrypt → sign → HashCash in niced child processes with a live bar → submit)
is :mod:`.compose_sending`; attachments are :mod:`.compose_attachments`."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.widgets import Footer, Header, Input, Label, TextArea

from mmtp_proto.outgoing import Outgoing

from .. import headers, keymap, replying
from ..bindings import bindings
from ..session import AccountSession
from ..widgets.send_progress import SendProgress
from ..widgets.tick import Tick
from .compose_attachments import ComposeAttachments
from .compose_sending import MINTER, ComposeSending, outcome_words

__all__ = ["MINTER", "ComposeScreen", "outcome_words"]


class ComposeScreen(ComposeSending, ComposeAttachments, Screen[bool]):
    # Enter in To/Subject is a priority binding: it runs when the app takes the key from its
    # queue, so keys typed after it in the same burst already go to the next field.
    BINDINGS: ClassVar = [
        *bindings(keymap.COMPOSE),
        Binding("enter", "next_field", "Next field", show=False, priority=True),
    ]

    def __init__(
        self,
        session: AccountSession,
        *,
        outgoing: Outgoing | None = None,
        to: str = "",
        draft_id: int | None = None,
        **fields: Any,
    ) -> None:
        """Edit ``outgoing``, or a new one from ``to`` and Outgoing's other ``fields``
        (subject, body, type, in_reply_to, references, attachments)."""
        super().__init__()
        self.session = session
        self.fresh = outgoing is None  # a new message (not a draft): it gets the signature
        if outgoing is None:
            outgoing = Outgoing(to=headers.split_addresses(to), **fields)
        self.outgoing = outgoing
        self.draft_id = draft_id
        self.saved = outgoing.to_dict()  # what the draft (or the caller) already holds
        self.sending = False
        self.closed = False  # sent, or put away on purpose: nothing left to keep
        self._cancel = threading.Event()

    def compose(self) -> ComposeResult:
        draft = self.outgoing
        known = [c.email for c in self.session.contacts.all()]
        known += self.session.store.contacts(self.session.account.name)
        known = sorted(set(known))
        yield Header()
        with Vertical(id="compose-form"):
            for label, field, addresses in (
                ("To ", "to", draft.to),
                ("Cc ", "cc", draft.cc),
                ("Bcc", "bcc", draft.bcc),
            ):
                with Horizontal(classes="row"):
                    yield Label(label, classes="field-label")
                    yield Input(
                        ", ".join(a.strip() for a in addresses if a.strip()),
                        placeholder="(name)%(domain)" if field == "to" else "",
                        id=field,
                        suggester=SuggestFromList(known, case_sensitive=False),
                    )
            with Horizontal(classes="row"):
                yield Label("Subj", classes="field-label")
                yield Input(draft.subject, id="subject")
            with Horizontal(classes="row", id="toggles"):
                yield Tick("Encrypt", value=draft.encrypt, id="encrypt")
                yield Tick("Sign", value=draft.sign, id="sign")
                yield Label("", id="attachments")
            yield TextArea(draft.body, id="body", soft_wrap=True, show_line_numbers=False)
            yield SendProgress(id="progress")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.title = f"Compose — from {self.session.address}"
        self.sub_title = {"REPLY": "reply", "FORWARD": "forward"}.get(
            self.outgoing.type, "new message"
        )
        if self.fresh:
            self._add_signature(quiet=True)
            self.saved = self.outgoing.to_dict()  # a signature alone is not worth a draft
        self._show_attachments()
        self.query_one("#progress", SendProgress).display = False
        if self.outgoing.recipients():
            self.query_one("#body", TextArea).focus()
            self.query_one("#body", TextArea).move_cursor((0, 0))
        else:
            self.query_one("#to", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        # The Outgoing follows the form as it is typed: once the widgets are gone (the app
        # quitting) it is all that is left to keep as a draft.
        if event.input.id in ("to", "cc", "bcc"):
            setattr(self.outgoing, event.input.id, headers.split_addresses(event.value))
        elif event.input.id == "subject":
            self.outgoing.subject = event.value

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        self.outgoing.body = event.text_area.text

    def on_unmount(self) -> None:
        # Whatever takes this compose away unsent (the app quitting, a crash) must not lose it.
        with contextlib.suppress(Exception):  # the store may already be closed
            self.keep_draft(quiet=True)

    # Tab goes To → Cc → Bcc → Subject → Body → Encrypt → Sign, as in other mail clients,
    # although the toggles stand above the body on screen.
    _TAB_ORDER: ClassVar[dict[tuple[str, str], str]] = {
        ("tab", "subject"): "#body",
        ("tab", "body"): "#encrypt",
        ("shift+tab", "encrypt"): "#body",
        ("shift+tab", "body"): "#subject",
        ("tab", "sign"): "#to",
        ("shift+tab", "to"): "#sign",
    }
    _NEXT_FIELD: ClassVar[dict[str, str]] = {
        "to": "#cc",
        "cc": "#bcc",
        "bcc": "#subject",
        "subject": "#body",
    }

    def on_key(self, event: events.Key) -> None:
        focused = self.focused
        target = self._TAB_ORDER.get((event.key, focused.id or "")) if focused else None
        if target is not None:
            event.prevent_default()
            event.stop()
            self.query_one(target).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "next_field":  # elsewhere (the body) Enter is just Enter
            return self.focused is not None and self.focused.id in self._NEXT_FIELD
        return True

    def action_next_field(self) -> None:
        """Enter in a header field moves on (To → Cc → Bcc → Subject → Body), at once:
        Widget.focus() would wait its turn behind keys already queued."""
        if self.focused is not None and self.focused.id in self._NEXT_FIELD:
            self.set_focus(self.query_one(self._NEXT_FIELD[self.focused.id]))

    def _read_form(self) -> Outgoing:
        """The Outgoing as the form now stands."""
        self.outgoing.to = headers.split_addresses(self.query_one("#to", Input).value)
        self.outgoing.cc = headers.split_addresses(self.query_one("#cc", Input).value)
        self.outgoing.bcc = headers.split_addresses(self.query_one("#bcc", Input).value)
        self.outgoing.subject = self.query_one("#subject", Input).value
        self.outgoing.body = self.query_one("#body", TextArea).text
        self.outgoing.encrypt = self.query_one("#encrypt", Tick).value
        self.outgoing.sign = self.query_one("#sign", Tick).value
        return self.outgoing

    def keep_draft(self, *, quiet: bool = False) -> None:
        """Save the compose as its draft if it changed and holds anything worth keeping."""
        if self.closed:
            return
        try:
            outgoing = self._read_form()
        except NoMatches:  # the widgets are gone: keep what was last typed
            outgoing = self.outgoing
        data = outgoing.to_dict()
        if data == self.saved:
            return
        if not (outgoing.subject.strip() or outgoing.body.strip() or outgoing.attachments):
            return
        self.draft_id = self.session.store.save_draft(
            self.session.account.name, outgoing, draft_id=self.draft_id
        )
        self.saved = data
        if not quiet:
            self.notify("Draft saved.")

    # ------------------------------------------------------------------ actions

    def action_cancel(self) -> None:
        if self.sending:
            self._cancel.set()
            self.query_one("#progress", SendProgress).stage("Cancelling…")
            return
        self.keep_draft()
        self.closed = True
        self.dismiss(False)

    def action_save_draft(self) -> None:
        self.keep_draft()

    def action_editor(self) -> None:
        """The headers (To, Cc, Subject) and the body in $EDITOR, read back after."""
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        outgoing = self._read_form()
        with tempfile.NamedTemporaryFile("w", suffix=".eml", delete=False) as fh:
            fh.write(headers.render(outgoing.to, outgoing.cc, outgoing.subject, outgoing.body))
            path = Path(fh.name)
        try:
            with self.app.suspend():
                subprocess.call([*shlex.split(editor), str(path)])
            edited = headers.parse(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            self.notify(f"Could not run {editor}: {exc}", severity="error", markup=False)
            return
        finally:
            path.unlink(missing_ok=True)
        self.apply_edited(edited)

    def apply_edited(self, edited: headers.Edited) -> None:
        """Put what came back from the editor into the form."""
        if edited.to or edited.cc or edited.subject:
            self.query_one("#to", Input).value = ", ".join(edited.to)
            self.query_one("#cc", Input).value = ", ".join(edited.cc)
            self.query_one("#subject", Input).value = edited.subject
        self.query_one("#body", TextArea).load_text(edited.body)
        self.outgoing.body = edited.body

    def _signature(self) -> str:
        path = getattr(self.app, "settings", None)
        name = getattr(path, "signature_file", "") if path is not None else ""
        return replying.read_signature(name) if name else ""

    def _add_signature(self, *, quiet: bool = False) -> None:
        signature = self._signature()
        if not signature:
            if not quiet:
                self.notify("No signature: set signature_file in tui.toml.", severity="warning")
            return
        area = self.query_one("#body", TextArea)
        body = replying.with_signature(area.text, signature)
        if body != area.text:
            area.load_text(body)
            self.outgoing.body = body

    def action_signature(self) -> None:
        self._add_signature()
