"""What the main screen does to messages: read/unread, move, undo, delete (and unqueue an
Outbox entry), flags and tags, mark all read, sort."""

from __future__ import annotations

from textual import work

from mmtp_proto.errors import LocalError, MMTPError

from .. import outbox, query
from ..mailstore import (
    OUTBOX,
    SENT,
    StoredMessage,
)
from ..session import error_text
from ..sync import delete_unreadable
from ..widgets.message_list import MessageList
from .dialogs import ChoiceScreen, ConfirmScreen
from .mail_view import MailView


class MessageActions(MailView):
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
                outbox.take_back(self.session, item)
                self.notify("Taken out of the Outbox: it is in Drafts.")
                self.refresh_view()

        question = "Stop sending this message? (It goes back to Drafts.)"
        if any(r.state == SENT for r in item.recipients):
            question = (
                "Stop sending this message to the recipients still waiting? (It goes back to "
                "Drafts, addressed to them only.)"
            )
        self.app.push_screen(ConfirmScreen(question), answer)

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
