"""The main screen: folders, the message list (threads grouped), the reader.

The screen is put together from mixins, each in a module named for what it does; this
module holds the layout, the event handlers and fetching."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Header, OptionList

from mmtp_proto.errors import LocalError, MMTPError

from .. import keymap, outbox
from ..bindings import bindings
from ..messages import (
    FetchFailed,
    MailFetched,
    NewMailWaiting,
    OutboxFlushed,
)
from ..session import error_text
from ..sync import fetch
from ..widgets.folder_list import FolderList
from ..widgets.message_list import MessageList
from ..widgets.reader import Reader
from .attachment_actions import AttachmentActions
from .folder_actions import FolderActions
from .mail_view import MailView
from .message_actions import MessageActions
from .navigation import Navigation
from .reply_actions import ReplyActions
from .worker_errors import SaysWorkerErrors


class MainScreen(
    SaysWorkerErrors,
    AttachmentActions,
    FolderActions,
    MessageActions,
    ReplyActions,
    Navigation,
    MailView,
):
    BINDINGS = bindings(keymap.MAIN)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main-body"):
            yield FolderList(id="folders")
            with Vertical(id="main-right"):
                yield MessageList(id="messages")
                yield Reader(id="reader")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.title = f"mmtp — {self.session.address}"
        self.refresh_view()
        self.query_one("#messages", MessageList).focus()
        if self.session.needs_passphrase():
            self.sub_title = "key locked: F unlocks it and gets mail"
        else:
            self.fetch_worker()
        interval = max(10, int(self.session.account.check_interval or 60))
        self.set_interval(interval, self.check_new, name="check")

    @on(OptionList.OptionHighlighted, "#folders")
    def folder_chosen(self, event: OptionList.OptionHighlighted) -> None:
        # Keys arrive in bursts: only the highlight that is still current counts.
        if event.option_index != event.option_list.highlighted:
            return
        if event.option.id and event.option.id != self.folder:
            self.folder = str(event.option.id)
            self.search_text = None
            self.tagged.clear()
            self.refresh_view()

    @on(DataTable.RowHighlighted, "#messages")
    def row_highlighted(self) -> None:
        self.show_selected()

    @on(DataTable.RowSelected, "#messages")
    def row_selected(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value or ""
        if key.startswith("d"):
            self.open_draft(int(key[1:]))
            return
        if key.startswith("o"):
            return
        message = self.selected()
        if message is not None and not message.read:
            self.store.set_read(message.id, True)
            self.refresh_view()
        self.query_one(Reader).focus()

    def on_key(self, event) -> None:
        if event.key == "escape" and self.search_text is not None:
            self.search_text = None
            self.refresh_view()
            event.stop()
        elif event.key == "escape" and self.tagged:
            self.tagged.clear()
            self.refresh_view()
            event.stop()

    # ------------------------------------------------------------------ fetching

    def action_fetch(self) -> None:
        def go() -> None:
            self.sub_title = "getting mail…"
            self.fetch_worker()

        self.needing_key(go, ": getting mail needs it")

    @work(thread=True, exclusive=True, exit_on_error=False, group="fetch")
    def fetch_worker(self) -> None:
        try:
            self._flush_outbox()
            self.post_message(MailFetched(fetch(self.session)))
        except (MMTPError, LocalError, OSError) as exc:
            self.post_message(FetchFailed(error_text(exc)))

    def _flush_outbox(self) -> None:
        """Blocking (from a worker): send what waits in the Outbox, if anything does."""
        if self.store.outbox(self.account_name):
            result = outbox.flush(self.session)
            if result.reached or result.failed:
                self.post_message(OutboxFlushed(result))

    @work(thread=True, exclusive=True, exit_on_error=False, group="check")
    def check_new(self) -> None:
        if self.session.needs_passphrase():
            return  # locked: the user chose not to unlock yet; F offers it again
        try:
            self._flush_outbox()
            count = self.session.check()
        except (MMTPError, LocalError, OSError):
            return  # offline: the next check tries again
        if count:
            self.post_message(NewMailWaiting(count))

    def on_outbox_flushed(self, message: OutboxFlushed) -> None:
        result = message.result
        if result.reached:
            self.notify(f"Outbox: sent to {', '.join(result.reached)}.", title="Sent", markup=False)
        for text in result.failed:
            self.notify(f"Outbox: {text}", severity="warning", timeout=15, markup=False)
        self.refresh_view()

    def on_mail_fetched(self, message: MailFetched) -> None:
        result = message.result
        for warning in result.warnings:
            self.notify(warning, title="KEY CHANGED", severity="error", timeout=30, markup=False)
        if result.new:
            self.notify(f"{result.new} new message{'s' * (result.new != 1)}.", title="New mail")
            self.app.new_mail_notice(result.new, self.account_name)  # type: ignore[attr-defined]
        if result.unreadable:
            self.notify(
                f"{result.unreadable} message{'s' * (result.unreadable != 1)} could not be read;"
                " they are listed as unreadable and can be deleted.",
                title="Unreadable mail",
                severity="warning",
            )
        self.refresh_view()

    def on_new_mail_waiting(self, message: NewMailWaiting) -> None:
        self.action_fetch()

    def worker_failed(self, words: str) -> None:
        """A worker of this screen failed unexpectedly (see worker_errors.py)."""
        self.notify(words, title="Error", severity="error", timeout=20)
        self.refresh_view()  # the sub-title no longer says "getting mail…"

    def on_fetch_failed(self, message: FetchFailed) -> None:
        # The reason may end in its own "?" (cannot connect …; is the server running?).
        end = "" if message.text.endswith((".", "?", "!")) else "."
        self.notify(
            f"Could not get mail: {message.text}{end} Mail already here still works offline.",
            title="Offline",
            severity="warning",
        )
        self.refresh_view()

    # ------------------------------------------------------------------ actions

    def action_focus(self, wid: str) -> None:
        self.query_one(f"#{wid}").focus()

    def action_keys(self) -> None:
        from .keys import KeysScreen

        self.app.push_screen(KeysScreen(self.session), lambda _: self.refresh_view())

    def action_accounts(self) -> None:
        self.app.action_accounts()  # type: ignore[attr-defined]
