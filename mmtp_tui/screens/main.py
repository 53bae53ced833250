"""The main screen: folders, the message list (threads grouped), the reader."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, OptionList

from mmtp_proto.errors import LocalError, MMTPError
from mmtp_proto.packet import decode_attachment

from .. import attachments, keymap, outbox, query, replying
from ..bindings import bindings
from ..mailstore import (
    ALL_INBOXES,
    OUTBOX,
    RESERVED,
    StoredMessage,
    folder_name_problem,
)
from ..messages import (
    AttachmentOpened,
    FetchFailed,
    MailFetched,
    NewMailWaiting,
    OutboxFlushed,
)
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
        self.sort = "date"
        self.collapsed = False
        self.tagged: set[int] = set()
        self.undo_stack: list[tuple[str, list[tuple[int, str]]]] = []
        self._g_at = 0.0  # when `g` was pressed (g g: the first message)

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
            self.sub_title = "key locked: F unlocks it and gets mail"
        else:
            self.fetch_worker()
        interval = max(10, int(self.session.account.check_interval or 60))
        self.set_interval(interval, self.check_new, name="check")

    # ------------------------------------------------------------------ view

    def folder_names(self) -> list[str]:
        names = self.store.folder_names(self.account_name)
        if len(self.app.settings.accounts) > 1:  # type: ignore[attr-defined]
            names.append(ALL_INBOXES)
        return names

    def refresh_view(self) -> None:
        counts = self.store.counts(self.account_name)
        names = self.folder_names()
        if self.folder not in names:
            self.folder = "Inbox"
        self.query_one(FolderList).show_counts(counts, self.folder, names)
        table = self.query_one(MessageList)
        how = "" if self.sort == "date" else f" · by {self.sort}"
        if self.search_text is not None:
            try:
                self.shown = query.search(self.store.messages(self.account_name), self.search_text)
            except query.QueryError as exc:
                self.notify(str(exc), severity="error")
                self.shown = []
            self.sub_title = f"search: {self.search_text} ({len(self.shown)}){how} · Esc clears"
        elif self.folder in ("Drafts", OUTBOX):
            self.shown = []
            self.sub_title = (
                "Drafts: Enter opens one"
                if self.folder == "Drafts"
                else "Outbox: sent when the server answers (F tries now) · d: back to Drafts"
            )
        else:
            if self.folder == ALL_INBOXES:
                accounts = list(self.app.settings.accounts)  # type: ignore[attr-defined]
                self.shown = self.store.inboxes(accounts)
                unread = sum(1 for m in self.shown if not m.read)
            else:
                self.shown = self.store.folder(self.account_name, self.folder)
                unread = counts.get(self.folder, (0, 0))[1]
            count = len(self.shown)
            self.sub_title = (
                f"{self.folder} · {count} message{'s' * (count != 1)}, {unread} unread{how}"
            )
        if self.sort != "date":  # the store already gives date order (threads together)
            self.shown = query.sort_messages(self.shown, self.sort)
        if self.collapsed:
            self.shown = query.collapse(self.shown)
            self.sub_title += " · threads collapsed"
        if self.tagged:
            self.sub_title += f" · {len(self.tagged)} tagged"
        if self.folder == "Drafts" and self.search_text is None:
            table.show_drafts(self.store.drafts(self.account_name))
        elif self.folder == OUTBOX and self.search_text is None:
            table.show_outbox(self.store.outbox(self.account_name))
        else:
            table.show(self.shown, outgoing=self.folder in ("Sent",), tagged=self.tagged)
        self.show_selected()

    def selected(self) -> StoredMessage | None:
        row_id = self.query_one(MessageList).selected_id()
        return self.store.get(row_id) if row_id is not None else None

    def show_selected(self) -> None:
        queued_id = self.query_one(MessageList).selected_queued_id()
        if queued_id is not None:
            self.query_one(Reader).show_queued(self.store.queued(queued_id))
            return
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
            self._flush_outbox()
            self.post_message(MailFetched(fetch(self.session)))
        except (MMTPError, LocalError, OSError) as exc:
            self.post_message(FetchFailed(error_text(exc)))

    def _flush_outbox(self) -> None:
        """Blocking (from a worker): send what waits in the Outbox, if anything does."""
        if self.store.outbox(self.account_name):
            result = outbox.flush(self.session)
            if result.sent or result.failed:
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
        if result.sent:
            count = len(result.sent)
            self.notify(f"Outbox: {count} message{'s' * (count != 1)} sent.", title="Sent")
        for text in result.failed:
            self.notify(f"Outbox: not sent yet: {text}", severity="warning", timeout=15)
        self.refresh_view()

    def on_mail_fetched(self, message: MailFetched) -> None:
        result = message.result
        for warning in result.warnings:
            self.notify(warning, title="KEY CHANGED", severity="error", timeout=30)
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

    def _reply(self, *, quoted: bool, everyone: bool = False) -> None:
        message = self.selected()
        if message is None:
            self.notify("Select a message to reply to.", severity="warning")
            return
        if message.account != self.account_name:
            self.notify(
                f"That message is in the account {message.account}: switch to it (A) to reply.",
                severity="warning",
            )
            return
        if everyone:
            self.compose_from(replying.reply_all(message, self.session.address, quoted=quoted))
        else:
            self.compose_from(replying.reply(message, quoted=quoted))

    def action_reply_all(self) -> None:
        self._reply(quoted=False, everyone=True)

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

    def targets(self) -> list[int]:
        """The tagged messages, else the one under the cursor."""
        if self.tagged:
            shown = {m.id for m in self.shown}
            return [i for i in self.tagged if i in shown] or sorted(self.tagged)
        message = self.selected()
        return [message.id] if message is not None else []

    def _moved(self, what: str, moves: list[tuple[int, str]]) -> None:
        if moves:
            self.undo_stack.append((what, moves))
            del self.undo_stack[:-20]
        self.tagged.clear()
        self.refresh_view()

    def action_move(self) -> None:
        ids = self.targets()
        if not ids:
            return
        here = self.folder
        choices = [
            (f, f)
            for f in self.store.folder_names(self.account_name)
            if f not in ("Drafts", OUTBOX, here)
        ]
        choices.append(("+", "New folder…"))
        word = f"these {len(ids)} messages" if len(ids) > 1 else "it"

        def chosen(folder: str | None) -> None:
            if folder == "+":
                self.action_new_folder(then_move=True)
            elif folder:
                self.action_move_to(folder)

        self.app.push_screen(ChoiceScreen(f"Move {word} to which folder?", choices), chosen)

    def action_move_to(self, folder: str) -> None:
        ids = self.targets()
        if not ids:
            return
        moves = self.store.move_many(ids, folder)
        count = len(moves)
        self.notify(f"Moved {count} message{'s' * (count != 1)} to {folder} (U undoes).")
        self._moved(f"move to {folder}", moves)

    def action_undo(self) -> None:
        if not self.undo_stack:
            self.notify("Nothing to undo.", severity="warning")
            return
        what, moves = self.undo_stack.pop()
        count = self.store.restore(moves)
        self.notify(f"Undone: {what} ({count} message{'s' * (count != 1)} back).")
        self.refresh_view()

    def action_delete(self) -> None:
        table = self.query_one(MessageList)
        queued_id = table.selected_queued_id()
        if queued_id is not None:
            self._unqueue(queued_id)
            return
        draft_id = table.selected_draft_id()
        if draft_id is not None:

            def delete_draft(yes: bool | None) -> None:
                if yes:
                    self.store.delete_draft(draft_id)
                    self.notify("Draft deleted.")
                    self.refresh_view()

            self.app.push_screen(ConfirmScreen("Delete this draft?"), delete_draft)
            return
        ids = self.targets()
        if not ids:
            return
        messages = [m for m in (self.store.get(i) for i in ids) if m is not None]
        unreadable = [m for m in messages if m.unreadable]
        if unreadable:  # they live on the server until deleted there: that first, alone
            word = f"these {len(unreadable)}" if len(unreadable) > 1 else "this"
            self.app.push_screen(
                ConfirmScreen(f"Delete {word} unreadable, here and on the server?"),
                lambda yes: (
                    self.needing_key(
                        lambda: self.delete_unreadable_worker(unreadable),
                        ": deleting on the server",
                    )
                    if yes
                    else None
                ),
            )
            return
        live = [m.id for m in messages if m.folder != "Trash"]
        if live:
            moves = self.store.move_many(live, "Trash")
            count = len(moves)
            self.notify(
                f"{count} message{'s' * (count != 1)} moved to Trash (U undoes; "
                "delete there for good)."
            )
            self._moved("delete", moves)
            return
        word = f"these {len(messages)} messages" if len(messages) > 1 else "this message"

        def answer(yes: bool | None) -> None:
            if yes:
                for message in messages:
                    self.store.delete(message.id)
                self.notify("Deleted for good.")
                self.tagged.clear()
                self.refresh_view()

        self.app.push_screen(ConfirmScreen(f"Delete {word} for good?"), answer)

    def _unqueue(self, queued_id: int) -> None:
        """Take a message out of the Outbox: it goes back to Drafts (nothing is lost)."""
        item = self.store.queued(queued_id)
        if item is None:
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self.store.save_draft(self.account_name, item.outgoing)
                self.store.unqueue(queued_id)
                self.notify("Taken out of the Outbox: it is in Drafts.")
                self.refresh_view()

        self.app.push_screen(
            ConfirmScreen("Stop sending this message? (It goes back to Drafts.)"), answer
        )

    # ------------------------------------------------------------------ flags and tags

    def action_toggle_flag(self) -> None:
        ids = self.targets()
        messages = [m for m in (self.store.get(i) for i in ids) if m is not None]
        if not messages:
            return
        flag = not messages[0].flagged
        for message in messages:
            self.store.set_flagged(message.id, flag)
        self.refresh_view()

    def action_toggle_tag(self) -> None:
        message = self.selected()
        if message is None:
            return
        self.tagged.symmetric_difference_update({message.id})
        self.refresh_view()
        self.query_one(MessageList).action_cursor_down()

    def action_clear_tags(self) -> None:
        self.tagged.clear()
        self.refresh_view()

    def action_mark_all_read(self) -> None:
        unread = [m for m in self.shown if not m.read]
        for message in unread:
            self.store.set_read(message.id, True)
        self.notify(f"{len(unread)} marked read.")
        self.refresh_view()

    # ------------------------------------------------------------------ sorting

    def action_cycle_sort(self) -> None:
        self.sort = query.SORTS[(query.SORTS.index(self.sort) + 1) % len(query.SORTS)]
        self.notify(f"Sorted by {self.sort}.")
        self.refresh_view()

    def action_toggle_collapse(self) -> None:
        self.collapsed = not self.collapsed
        self.refresh_view()

    # ------------------------------------------------------------------ vi-style movement

    def _table(self) -> MessageList:
        return self.query_one(MessageList)

    def _step(self, down: bool) -> None:
        focused = self.focused
        if isinstance(focused, Reader):
            (focused.scroll_down if down else focused.scroll_up)(animate=False)
        elif isinstance(focused, FolderList):
            (focused.action_cursor_down if down else focused.action_cursor_up)()
        else:
            table = self._table()
            (table.action_cursor_down if down else table.action_cursor_up)()

    def action_move_down(self) -> None:
        self._step(True)

    def action_move_up(self) -> None:
        self._step(False)

    def action_next_message(self) -> None:
        self._table().action_cursor_down()

    def action_previous_message(self) -> None:
        self._table().action_cursor_up()

    def action_page_down(self) -> None:
        """A page of the reader; at its end, the next message (as a pager does)."""
        reader = self.query_one(Reader)
        if reader.scroll_y >= reader.max_scroll_y:
            self.action_next_message()
        else:
            reader.scroll_page_down(animate=False)

    def action_page_up(self) -> None:
        self.query_one(Reader).scroll_page_up(animate=False)

    def action_first_chord(self) -> None:
        now = time.monotonic()
        if now - self._g_at <= 1.5:
            self._g_at = 0.0
            self._table().move_cursor(row=0)
        else:
            self._g_at = now

    def action_last_message(self) -> None:
        table = self._table()
        if table.row_count:
            table.move_cursor(row=table.row_count - 1)

    def _thread_step(self, step: int) -> None:
        table = self._table()
        if table.drafts is not None or table.outbox is not None or not self.shown:
            return
        table.move_cursor(row=query.next_thread_index(self.shown, table.cursor_row, step))

    def action_next_thread(self) -> None:
        self._thread_step(1)

    def action_previous_thread(self) -> None:
        self._thread_step(-1)

    # ------------------------------------------------------------------ folders

    def action_new_folder(self, then_move: bool = False) -> None:
        def create(name: str | None) -> None:
            if name is None:
                return
            problem = folder_name_problem(name, self.store.user_folders(self.account_name))
            if problem:
                self.notify(problem, severity="error")
                return
            self.store.create_folder(self.account_name, name)
            self.notify(f"Folder {name} made.")
            if then_move:
                self.action_move_to(name)
            else:
                self.refresh_view()

        self.app.push_screen(PromptScreen("Name of the new folder:"), create)

    def _user_folder(self) -> str | None:
        if self.folder in RESERVED:
            self.notify(
                "Choose one of your own folders first (built-in ones stay).", severity="warning"
            )
            return None
        return self.folder

    def action_rename_folder(self) -> None:
        old = self._user_folder()
        if old is None:
            return

        def rename(new: str | None) -> None:
            if not new or new == old:
                return
            others = [f for f in self.store.user_folders(self.account_name) if f != old]
            problem = folder_name_problem(new, others)
            if problem:
                self.notify(problem, severity="error")
                return
            self.store.rename_folder(self.account_name, old, new)
            self.folder = new
            self.notify(f"Folder {old} is now {new}.")
            self.refresh_view()

        self.app.push_screen(PromptScreen(f"New name for {old}:", old), rename)

    def action_delete_folder(self) -> None:
        name = self._user_folder()
        if name is None:
            return

        def delete(yes: bool | None) -> None:
            if yes:
                count = self.store.delete_folder(self.account_name, name)
                self.folder = "Inbox"
                self.notify(f"Folder {name} deleted; {count} message(s) moved to Trash.")
                self.refresh_view()

        self.app.push_screen(
            ConfirmScreen(f"Delete the folder {name}? Its messages go to Trash."), delete
        )

    def action_all_inboxes(self) -> None:
        if len(self.app.settings.accounts) < 2:  # type: ignore[attr-defined]
            self.notify("There is one account: its Inbox is all there is.")
            return
        self.folder = ALL_INBOXES
        self.search_text = None
        self.refresh_view()

    @work(thread=True, exit_on_error=False, group="delete-unreadable")
    def delete_unreadable_worker(self, messages: list[StoredMessage]) -> None:
        on_server = 0
        try:
            for message in messages:
                on_server += delete_unreadable(self.session, message)
        except (MMTPError, LocalError, OSError) as exc:
            text = f"Could not delete it on the server: {error_text(exc)}."
            self.app.call_from_thread(self.notify, text, severity="error")
        else:
            done = "Deleted, here and on the server." if on_server else "Deleted here."
            self.app.call_from_thread(self.notify, done)
        self.app.call_from_thread(self.refresh_view)

    def action_search(self) -> None:
        def run(text: str | None) -> None:
            if text:
                self.search_text = text
                self.refresh_view()

        self.app.push_screen(
            PromptScreen(
                "Search (words, from: to: subject: before:/after:YYYY-MM-DD has:attachment "
                "is:unread is:flagged):",
                self.search_text or "",
            ),
            run,
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

    def action_keys(self) -> None:
        from .keys import KeysScreen

        self.app.push_screen(KeysScreen(self.session), lambda _: self.refresh_view())

    def action_accounts(self) -> None:
        self.app.action_accounts()  # type: ignore[attr-defined]
