"""The main screen's state and how it is drawn: the folder column, the message list
(threads grouped, sorted, searched), the reader. The action mixins build on it."""

from __future__ import annotations

from collections.abc import Callable

from textual.screen import Screen

from .. import query
from ..mailstore import (
    ALL_INBOXES,
    OUTBOX,
    StoredMessage,
)
from ..session import AccountSession
from ..widgets.folder_list import FolderList
from ..widgets.message_list import MessageList
from ..widgets.reader import Reader


class MailView(Screen):
    """What every part of the main screen shares: the account, the folder shown, the
    search, the sort, the tags, the undo list."""

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
        deliveries = None
        if message is not None and message.direction == "out":
            deliveries = self.store.deliveries(message.account, message.message_id)
        self.query_one(Reader).show(
            message, thread, key_change=change.text if change else None, deliveries=deliveries
        )

    def needing_key(self, then: Callable[[], None], why: str) -> None:
        self.app.with_unlocked_key(self.session, then, why=why)  # type: ignore[attr-defined]

    def _table(self) -> MessageList:
        return self.query_one(MessageList)
