"""The main screen: folders, the message list (threads grouped), the reader."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, OptionList

from mmtp_proto.errors import LocalError, MMTPError
from mmtp_proto.packet import decode_attachment

from .. import attachments, keymap, replying
from ..bindings import bindings
from ..mailstore import FOLDERS, StoredMessage
from ..messages import FetchFailed, MailFetched, NewMailWaiting
from ..replying import Prefill
from ..session import AccountSession, error_text
from ..sync import delete_unreadable, fetch
from ..widgets.folder_list import FolderList
from ..widgets.message_list import MessageList
from ..widgets.reader import Reader
from .dialogs import ChoiceScreen, ConfirmScreen, PromptScreen


class MainScreen(Screen):
    BINDINGS = bindings(keymap.MAIN)

    def __init__(self, session: AccountSession) -> None:
        super().__init__()
        self.session = session
        self.folder = "Inbox"
        self.search_text: str | None = None
        self.shown: list[StoredMessage] = []

    @property
    def store(self):
        return self.session.store

    @property
    def account_name(self) -> str:
        return self.session.account.name

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
            self.sub_title = "key locked: g unlocks it and gets mail"
        else:
            self.fetch_worker()
        interval = max(10, int(self.session.account.check_interval or 60))
        self.set_interval(interval, self.check_new, name="check")

    # ------------------------------------------------------------------ view

    def refresh_view(self) -> None:
        counts = self.store.counts(self.account_name)
        self.query_one(FolderList).show_counts(counts, self.folder)
        if self.search_text is not None:
            self.shown = self.store.search(self.account_name, self.search_text)
            self.sub_title = f"search: {self.search_text} ({len(self.shown)}) · Esc clears"
        elif self.folder == "Drafts":
            self.shown = []
            self.sub_title = "Drafts: Enter opens one"
        else:
            self.shown = self.store.folder(self.account_name, self.folder)
            unread = counts.get(self.folder, (0, 0))[1]
            count = len(self.shown)
            self.sub_title = f"{self.folder} · {count} message{'s' * (count != 1)}, {unread} unread"
        table = self.query_one(MessageList)
        if self.folder == "Drafts" and self.search_text is None:
            table.show_drafts(self.store.drafts(self.account_name))
        else:
            table.show(self.shown, outgoing=self.folder == "Sent")
        self.show_selected()

    def selected(self) -> StoredMessage | None:
        row_id = self.query_one(MessageList).selected_id()
        return self.store.get(row_id) if row_id is not None else None

    def show_selected(self) -> None:
        message = self.selected()
        thread = self.store.thread(self.account_name, message.thread) if message else []
        change = None
        if message is not None and message.direction == "in":
            change = self.session.contacts.changes().get(message.sender)
        self.query_one(Reader).show(message, thread, key_change=change.text if change else None)

    @on(OptionList.OptionHighlighted, "#folders")
    def folder_chosen(self, event: OptionList.OptionHighlighted) -> None:
        # Keys arrive in bursts: only the highlight that is still current counts.
        if event.option_index != event.option_list.highlighted:
            return
        if event.option.id and event.option.id != self.folder:
            self.folder = str(event.option.id)
            self.search_text = None
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

    # ------------------------------------------------------------------ fetching

    def needing_key(self, then: Callable[[], None], why: str) -> None:
        self.app.with_unlocked_key(self.session, then, why=why)  # type: ignore[attr-defined]

    def action_fetch(self) -> None:
        def go() -> None:
            self.sub_title = "getting mail…"
            self.fetch_worker()

        self.needing_key(go, ": getting mail needs it")

    @work(thread=True, exclusive=True, exit_on_error=False, group="fetch")
    def fetch_worker(self) -> None:
        try:
            self.post_message(MailFetched(fetch(self.session)))
        except (MMTPError, LocalError, OSError) as exc:
            self.post_message(FetchFailed(error_text(exc)))

    @work(thread=True, exclusive=True, exit_on_error=False, group="check")
    def check_new(self) -> None:
        if self.session.needs_passphrase():
            return  # locked: the user chose not to unlock yet; g offers it again
        try:
            count = self.session.check()
        except (MMTPError, LocalError, OSError):
            return  # offline: the next check tries again
        if count:
            self.post_message(NewMailWaiting(count))

    def on_mail_fetched(self, message: MailFetched) -> None:
        result = message.result
        for warning in result.warnings:
            self.notify(warning, title="KEY CHANGED", severity="error", timeout=30)
        if result.new:
            self.notify(f"{result.new} new message{'s' * (result.new != 1)}.", title="New mail")
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

    def on_fetch_failed(self, message: FetchFailed) -> None:
        self.notify(
            f"Could not get mail: {message.text}. Mail already here still works offline.",
            title="Offline",
            severity="warning",
        )
        self.refresh_view()

    # ------------------------------------------------------------------ actions

    def action_focus(self, wid: str) -> None:
        self.query_one(f"#{wid}").focus()

    def action_compose(self) -> None:
        from .compose import ComposeScreen

        self.needing_key(
            lambda: self.app.push_screen(
                ComposeScreen(self.session), lambda _: self.refresh_view()
            ),
            ": sending needs it",
        )

    def open_draft(self, draft_id: int) -> None:
        from .compose import ComposeScreen

        draft = self.store.draft(draft_id)
        if draft is not None:
            self.app.push_screen(
                ComposeScreen(self.session, outgoing=draft.outgoing, draft_id=draft.id),
                lambda _: self.refresh_view(),
            )

    def compose_from(self, prefill: Prefill) -> None:
        self.needing_key(lambda: self._compose_from(prefill), ": sending needs it")

    def _compose_from(self, prefill: Prefill) -> None:
        from .compose import ComposeScreen

        self.app.push_screen(
            ComposeScreen(
                self.session,
                to=prefill.to,
                subject=prefill.subject,
                body=prefill.body,
                type=prefill.type,
                in_reply_to=prefill.in_reply_to,
                references=prefill.references,
                attachments=prefill.attachments,
            ),
            lambda _: self.refresh_view(),
        )

    def _reply(self, *, quoted: bool) -> None:
        message = self.selected()
        if message is None:
            self.notify("Select a message to reply to.", severity="warning")
            return
        self.compose_from(replying.reply(message, quoted=quoted))

    def action_reply(self) -> None:
        self._reply(quoted=False)

    def action_reply_quote(self) -> None:
        self._reply(quoted=True)

    def action_forward(self) -> None:
        message = self.selected()
        if message is None:
            self.notify("Select a message to forward.", severity="warning")
            return
        self.compose_from(replying.forward(message))

    def action_toggle_read(self) -> None:
        message = self.selected()
        if message is not None:
            self.store.set_read(message.id, not message.read)
            self.refresh_view()

    def action_move(self) -> None:
        message = self.selected()
        if message is None:
            return
        choices = [(f, f) for f in FOLDERS if f not in ("Drafts", message.folder)]
        self.app.push_screen(
            ChoiceScreen("Move to which folder?", choices),
            lambda folder: self.action_move_to(folder) if folder else None,
        )

    def action_move_to(self, folder: str) -> None:
        message = self.selected()
        if message is not None:
            self.store.move(message.id, folder)
            self.notify(f"Moved to {folder}.")
            self.refresh_view()

    def action_delete(self) -> None:
        draft_id = self.query_one(MessageList).selected_draft_id()
        if draft_id is not None:

            def delete_draft(yes: bool | None) -> None:
                if yes:
                    self.store.delete_draft(draft_id)
                    self.notify("Draft deleted.")
                    self.refresh_view()

            self.app.push_screen(ConfirmScreen("Delete this draft?"), delete_draft)
            return
        message = self.selected()
        if message is None:
            return
        if message.unreadable:
            self.app.push_screen(
                ConfirmScreen("Delete this unreadable message, here and on the server?"),
                lambda yes: (
                    self.needing_key(
                        lambda: self.delete_unreadable_worker(message), ": deleting on the server"
                    )
                    if yes
                    else None
                ),
            )
            return
        if message.folder != "Trash":
            self.store.delete(message.id)
            self.notify("Moved to Trash (delete it there for good).")
            self.refresh_view()
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self.store.delete(message.id)
                self.notify("Deleted for good.")
                self.refresh_view()

        self.app.push_screen(ConfirmScreen("Delete this message for good?"), answer)

    @work(thread=True, exit_on_error=False, group="delete-unreadable")
    def delete_unreadable_worker(self, message: StoredMessage) -> None:
        try:
            on_server = delete_unreadable(self.session, message)
        except (MMTPError, LocalError, OSError) as exc:
            text = f"Could not delete it on the server: {error_text(exc)}."
            self.app.call_from_thread(self.notify, text, severity="error")
            return
        done = "Deleted, here and on the server." if on_server else "Deleted here."
        self.app.call_from_thread(self.notify, done)
        self.app.call_from_thread(self.refresh_view)

    def action_search(self) -> None:
        def run(text: str | None) -> None:
            if text:
                self.search_text = text
                self.refresh_view()

        self.app.push_screen(
            PromptScreen("Search subject, sender and body:", self.search_text or ""), run
        )

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

    def action_keys(self) -> None:
        from .keys import KeysScreen

        self.app.push_screen(KeysScreen(self.session), lambda _: self.refresh_view())

    def action_accounts(self) -> None:
        self.app.action_accounts()  # type: ignore[attr-defined]
