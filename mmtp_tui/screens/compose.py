"""Compose: To, Cc, Bcc (completing from contacts), Subject, Body, attachments, encrypt/sign;
sending goes through the one send pipeline (encrypt → sign → HashCash in a child process with a live
bar → submit); Esc cancels. Whatever was written is kept as a draft unless it was sent."""

from __future__ import annotations

import contextlib
import mimetypes
import multiprocessing
import os
import shlex
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.widgets import Footer, Header, Input, Label, TextArea

from mmtp_proto.errors import LocalError, MMTPError
from mmtp_proto.hashcash import MintCancelled
from mmtp_proto.minter import Minter, MintStatus
from mmtp_proto.outgoing import Outgoing
from mmtp_proto.packet import make_attachment
from mmtp_proto.sending import Outcomes, SendResult, Step

from .. import headers, keymap, outbox, replying
from ..bindings import bindings
from ..session import AccountSession, error_text
from ..widgets.send_progress import SendProgress
from ..widgets.tick import Tick
from .dialogs import ChoiceScreen, PathSuggester, PromptScreen

# One child process: the UI's event loop keeps the GIL while the stamp is minted.
MINTER = Minter(processes=1, progress_interval=0.12)
MINT_NICENESS = 10  # on a busy machine the keys typed meanwhile go first


def yield_cpu_to_the_ui() -> None:
    """Lower the priority of the minting child processes, so that on a machine whose cores
    are busy the interface still answers keys at once; alone on a core the stamp takes as
    long as before."""
    for child in multiprocessing.active_children():
        if child.pid is not None:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, child.pid, MINT_NICENESS)


class ComposeScreen(Screen[bool]):
    # Enter in To/Subject is a priority binding: it runs when the app takes the key from its
    # queue, so keys typed after it in the same burst already go to the next field.
    BINDINGS: ClassVar = [
        *bindings(keymap.COMPOSE),
        Binding("enter", "next_field", "Next field", show=False, priority=True),
    ]

    class StepStarted(Message):
        def __init__(self, step: Step) -> None:
            super().__init__()
            self.step = step

    class Minting(Message):
        def __init__(self, status: MintStatus) -> None:
            super().__init__()
            self.status = status

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, ComposeScreen.Minting)

    class StampStarted(Message):
        """The stamp for the n-th of several recipients is being minted."""

        def __init__(self, number: int, total: int) -> None:
            super().__init__()
            self.number = number
            self.total = total

    class Sent(Message):
        def __init__(self, result: SendResult | Outcomes) -> None:
            super().__init__()
            self.result = result

    class SendFailed(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class SendCancelled(Message):
        pass

    class Queued(Message):
        """The server could not be reached: the message waits in the Outbox."""

        def __init__(self, result: outbox.QueueResult) -> None:
            super().__init__()
            self.result = result

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
        self._niced = False

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

    def _show_attachments(self) -> None:
        names = ", ".join(str(a.get("filename")) for a in self.outgoing.attachments)
        # Text, not markup: a file name is the user's, "[/x]" and all.
        self.query_one("#attachments", Label).update(Text(f"📎 {names}" if names else ""))

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

    # ------------------------------------------------------------------ sending

    def action_send(self) -> None:
        if self.sending:
            return
        outgoing = self._read_form()
        if not outgoing.recipients():
            self.notify("Who is it for? Fill in To.", severity="error")
            self.query_one("#to", Input).focus()
            return
        self.sending = True
        self._niced = False
        self._cancel.clear()
        progress = self.query_one("#progress", SendProgress)
        progress.display = True
        progress.which = ""
        progress.stage("Connecting…")
        self.send_worker(Outgoing.from_dict(outgoing.to_dict()))

    @work(thread=True, exclusive=True, exit_on_error=False, group="send")
    def send_worker(self, outgoing: Outgoing) -> None:
        on_step = lambda step: self.post_message(self.StepStarted(step))  # noqa: E731
        progress = lambda status: self.post_message(self.Minting(status))  # noqa: E731
        try:
            result: SendResult | Outcomes | outbox.QueueResult
            if len(outgoing.recipients()) > 1:
                result = self._send_to_all(outgoing, on_step, progress)
            else:
                result = outbox.send_or_queue(
                    self.session,
                    outgoing,
                    minter=MINTER,
                    on_step=on_step,
                    progress=progress,
                    cancel=self._cancel.is_set,
                )
        except MintCancelled:
            self.post_message(self.SendCancelled())
        except (MMTPError, LocalError, OSError, ValueError, RuntimeError) as exc:
            self.post_message(self.SendFailed(error_text(exc)))
        else:
            if isinstance(result, outbox.QueueResult):
                self.post_message(self.Queued(result))
            else:
                self.post_message(self.Sent(result))

    def _send_to_all(
        self,
        outgoing: Outgoing,
        on_step: Callable[[Step], None],
        progress: Callable[[MintStatus], None],
    ) -> Outcomes | SendResult | outbox.QueueResult:
        """Several recipients (SPEC §9): one packet each; the Outbox keeps the message, or
        the recipients still unsent, when the server cannot be reached or goes away."""
        return outbox.send_or_queue(
            self.session,
            outgoing,
            minter=MINTER,
            on_step=on_step,
            progress=progress,
            cancel=self._cancel.is_set,
            on_stamp=lambda n, total: self.post_message(self.StampStarted(n, total)),
        )

    def on_compose_screen_queued(self, message: Queued) -> None:
        self.query_one("#progress", SendProgress).finish()
        self.closed = True
        if self.draft_id is not None:
            self.session.store.delete_draft(self.draft_id)
        how = "stamped; it" if message.result.stamped else "it"
        self.notify(
            f"The server cannot be reached: the message waits in the Outbox ({how} goes out "
            "when the server answers).",
            title="Queued",
            severity="warning",
            timeout=10,
        )
        self.dismiss(True)

    def on_compose_screen_step_started(self, message: StepStarted) -> None:
        words = {
            Step.SEAL: "Encrypting and signing…" if self.outgoing.encrypt else "Signing…",
            Step.STAMP: "HashCash…",
            Step.SUBMIT: "Sending…",
        }
        self.query_one("#progress", SendProgress).stage(words[message.step])

    def on_compose_screen_stamp_started(self, message: StampStarted) -> None:
        self.query_one("#progress", SendProgress).counting(message.number, message.total)

    def on_compose_screen_minting(self, message: Minting) -> None:
        if not self._niced:  # the first report: the child is there now
            self._niced = True
            yield_cpu_to_the_ui()
        if not self._cancel.is_set():
            self.query_one("#progress", SendProgress).mint(message.status)

    def on_compose_screen_sent(self, message: Sent) -> None:
        result = message.result
        if isinstance(result, dict):
            self._report_outcomes(result)
            return
        self.query_one("#progress", SendProgress).finish()
        self.closed = True
        if self.draft_id is not None:
            self.session.store.delete_draft(self.draft_id)
        how = ", ".join(
            w for w, on in (("encrypted", result.encrypted), ("signed", result.signed)) if on
        )
        self.notify(f"Sent to {result.packet['recipient']} ({how or 'in clear'}).", markup=False)
        self.dismiss(True)

    def _report_outcomes(self, outcomes: Outcomes) -> None:
        """Each recipient's outcome in words; a failure for one never hides the others'.
        All sent: the compose closes. Some failed: it stays, holding only those, to retry."""
        words, failed = outcome_words(outcomes)
        if len(failed) == len(outcomes):
            self._stopped()
            self.notify(words, title="Send failed", severity="error", timeout=20, markup=False)
            return
        if failed:
            self._stopped()
            keep = {a.lower() for a in failed}
            for field in ("to", "cc", "bcc"):
                widget = self.query_one(f"#{field}", Input)
                left = [a for a in headers.split_addresses(widget.value) if a.lower() in keep]
                widget.value = ", ".join(left)
            self.notify(words, title="Partly sent", severity="warning", timeout=20, markup=False)
            return
        self.query_one("#progress", SendProgress).finish()
        self.closed = True
        if self.draft_id is not None:
            self.session.store.delete_draft(self.draft_id)
        self.notify(words, markup=False)
        self.dismiss(True)

    def _stopped(self) -> None:
        self.sending = False
        self.query_one("#progress", SendProgress).display = False

    def on_compose_screen_send_failed(self, message: SendFailed) -> None:
        self._stopped()
        self.notify(
            f"Not sent: {message.text}",
            title="Send failed",
            severity="error",
            timeout=15,
            markup=False,
        )

    def on_compose_screen_send_cancelled(self, message: SendCancelled) -> None:
        self._stopped()
        self.notify("Sending cancelled; the message is still here.")

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


def outcome_words(outcomes: Outcomes) -> tuple[str, list[str]]:
    """Plain words for a send to several recipients: who got it, who did not and why.
    Returns the words and the addresses that failed."""
    sent = [r for r, o in outcomes.items() if isinstance(o, SendResult)]
    failed = [r for r, o in outcomes.items() if not isinstance(o, SendResult)]
    lines = []
    if sent:
        queued = [r for r in sent if getattr(outcomes[r], "queued", False)]
        lines.append(f"Sent to {', '.join(sent)}.")
        if queued:
            lines.append(f"(Waiting at the server for another domain: {', '.join(queued)}.)")
    for recipient in failed:
        outcome = outcomes[recipient]
        assert not isinstance(outcome, SendResult)
        lines.append(f"Not sent to {recipient}: {error_text(outcome)}")
    return "\n".join(lines), failed
