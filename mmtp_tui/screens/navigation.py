"""Moving around the main screen vi-style: j/k, pages, g g / G, thread to thread."""

from __future__ import annotations

import time

from .. import query
from ..widgets.folder_list import FolderList
from ..widgets.reader import Reader
from .mail_view import MailView


class Navigation(MailView):
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
