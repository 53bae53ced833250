"""The local mail store: SQLite in the user's data dir, one file for all accounts.

Messages keep their packet as received, plus what opening it found (decrypted subject and
body, cached for search and offline reading; signature and integrity status). Folders are
names; threads are keyed by the first of `references`, else `inReplyTo`, else the message's
own id. Plain module: no Textual.
"""

from __future__ import annotations

from .draft_table import DraftTable
from .folder_table import FolderTable
from .message_table import MessageTable
from .outbox_table import OutboxTable
from .records import (
    ALL_INBOXES,
    FAILED,
    FOLDERS,
    MAX_FOLDER_NAME,
    OUTBOX,
    QUEUED,
    RESERVED,
    SENT,
    Delivery,
    Draft,
    Queued,
    Recipient,
    StoredMessage,
    folder_name_problem,
    order_threads,
    ordered_in_thread,
    thread_key,
)

__all__ = [
    "ALL_INBOXES",
    "FAILED",
    "FOLDERS",
    "MAX_FOLDER_NAME",
    "OUTBOX",
    "QUEUED",
    "RESERVED",
    "SENT",
    "Delivery",
    "Draft",
    "MailStore",
    "Queued",
    "Recipient",
    "StoredMessage",
    "folder_name_problem",
    "order_threads",
    "ordered_in_thread",
    "thread_key",
]


class MailStore(MessageTable, FolderTable, OutboxTable, DraftTable):
    """The whole store: one SQLite file, one locked connection (see Database), the methods
    of every table."""

    def counts(self, account: str) -> dict[str, tuple[int, int]]:
        """folder -> (total, unread)."""
        result = {name: (0, 0) for name in FOLDERS}
        for row in self._rows(
            "SELECT folder, COUNT(*), SUM(1 - read) FROM messages WHERE account = ?"
            " GROUP BY folder",
            (account,),
        ):
            result[row[0]] = (int(row[1]), int(row[2] or 0))
        result["Drafts"] = (len(self.drafts(account)), 0)
        result[OUTBOX] = (len(self._rows("SELECT id FROM outbox WHERE account = ?", (account,))), 0)
        return result
