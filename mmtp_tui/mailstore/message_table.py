"""Stored messages: adding what was fetched or sent, reading folders, threads and search,
and moving, flagging and deleting them."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from .database import Database
from .records import StoredMessage, order_threads, thread_key


class MessageTable(Database):
    def add_message(
        self,
        account: str,
        *,
        packet: dict[str, Any],
        direction: str,
        folder: str,
        subject: str,
        body: str,
        read: bool = False,
        encrypted: bool = False,
        decrypted: bool = True,
        integrity_ok: bool = True,
        signature: str = "unsigned",
        signer_fingerprint: str | None = None,
        problem: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
    ) -> bool:
        """Store one message; False if this account already has it (same id, direction)."""
        meta = packet.get("meta") or {}
        message_id = str(meta.get("messageId", ""))
        refs = [r for r in meta.get("references") or [] if isinstance(r, str)]
        in_reply_to = meta.get("inReplyTo") if isinstance(meta.get("inReplyTo"), str) else None
        timestamp = meta.get("timestamp") if isinstance(meta.get("timestamp"), int) else 0
        received = meta.get("receivedAt")
        received = received if isinstance(received, int) else int(time.time())
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO messages (account, message_id, direction, folder, sender,"
                " recipient, subject, body, timestamp, received_at, read, encrypted, decrypted,"
                " integrity_ok, signature, signer_fingerprint, problem, in_reply_to, refs,"
                " thread, attachments, packet)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    account,
                    message_id,
                    direction,
                    folder,
                    str(packet.get("sender", "")),
                    str(packet.get("recipient", "")),
                    subject,
                    body,
                    timestamp,
                    received,
                    int(read),
                    int(encrypted),
                    int(decrypted),
                    int(integrity_ok),
                    signature,
                    signer_fingerprint,
                    problem,
                    in_reply_to,
                    json.dumps(refs),
                    thread_key(message_id, in_reply_to, refs),
                    json.dumps(attachments or []),
                    json.dumps(packet),
                ),
            )
            return cur.rowcount == 1

    def add_unreadable(
        self,
        account: str,
        *,
        message_id: str,
        reason: str,
        sender: str = "",
        timestamp: int = 0,
        raw: str = "",
    ) -> bool:
        """Keep a fetched packet that could not be read, so the user sees it and can delete
        it on the server; the packet itself is not kept (`raw`: a short excerpt for the body).
        False if this account already has it."""
        body = f"This message could not be read: {reason}.\nDelete it to remove it from the server."
        if raw:
            body += f"\n\nThe start of what arrived:\n{raw}"
        now = int(time.time())
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO messages (account, message_id, direction, folder, sender,"
                " recipient, subject, body, timestamp, received_at, encrypted, decrypted,"
                " integrity_ok, problem, thread, unreadable)"
                " VALUES (?,?,'in','Inbox',?,'',?,?,?,?,0,0,0,?,?,1)",
                (
                    account,
                    message_id,
                    sender,
                    "(unreadable message)",
                    body,
                    timestamp or now,
                    now,
                    reason,
                    message_id,
                ),
            )
            return cur.rowcount == 1

    def remove(self, row_id: int) -> None:
        """Gone for good, wherever it is (an unreadable message the server has dropped)."""
        self._exec("DELETE FROM messages WHERE id = ?", (row_id,))

    @staticmethod
    def _message(row: sqlite3.Row) -> StoredMessage:
        values = dict(row)
        for key in ("read", "encrypted", "decrypted", "integrity_ok", "flagged", "unreadable"):
            values[key] = bool(values[key])
        values["refs"] = json.loads(values["refs"])
        values["attachments"] = json.loads(values["attachments"])
        values["packet"] = json.loads(values["packet"])
        return StoredMessage(**values)

    def get(self, row_id: int) -> StoredMessage | None:
        rows = self._rows("SELECT * FROM messages WHERE id = ?", (row_id,))
        return self._message(rows[0]) if rows else None

    def find(self, account: str, message_id: str) -> StoredMessage | None:
        rows = self._rows(
            "SELECT * FROM messages WHERE account = ? AND message_id = ? ORDER BY direction",
            (account, message_id),
        )
        return self._message(rows[0]) if rows else None

    def folder(self, account: str, folder: str) -> list[StoredMessage]:
        """A folder's messages, threads together: threads by their newest message first,
        each thread oldest first, replies indented by `depth`."""
        rows = self._rows(
            "SELECT * FROM messages WHERE account = ? AND folder = ? ORDER BY timestamp, id",
            (account, folder),
        )
        return order_threads([self._message(r) for r in rows])

    def thread(self, account: str, thread: str) -> list[StoredMessage]:
        rows = self._rows(
            "SELECT * FROM messages WHERE account = ? AND thread = ? AND folder != 'Trash'"
            " ORDER BY timestamp, id",
            (account, thread),
        )
        return [self._message(r) for r in rows]

    def search(self, account: str, text: str) -> list[StoredMessage]:
        """Subject, sender and (decrypted) body, case-insensitive; Trash excluded."""
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._rows(
            "SELECT * FROM messages WHERE account = ? AND folder != 'Trash' AND ("
            " subject LIKE ? ESCAPE '\\' OR sender LIKE ? ESCAPE '\\' OR body LIKE ? ESCAPE '\\')"
            " ORDER BY timestamp DESC, id DESC",
            (account, pattern, pattern, pattern),
        )
        return [self._message(r) for r in rows]

    def contacts(self, account: str) -> list[str]:
        rows = self._rows(
            "SELECT sender AS a FROM messages WHERE account = ? AND direction = 'in' UNION"
            " SELECT recipient AS a FROM messages WHERE account = ? AND direction = 'out'",
            (account, account),
        )
        return sorted({str(r[0]) for r in rows})

    def set_read(self, row_id: int, read: bool = True) -> None:
        self._exec("UPDATE messages SET read = ? WHERE id = ?", (int(read), row_id))

    def move(self, row_id: int, folder: str) -> None:
        self._exec("UPDATE messages SET folder = ? WHERE id = ?", (folder, row_id))

    def delete(self, row_id: int) -> str:
        """To Trash; from Trash, for good. Answers 'trash' or 'deleted'."""
        message = self.get(row_id)
        if message is None:
            return "deleted"
        if message.folder != "Trash":
            self.move(row_id, "Trash")
            return "trash"
        self._exec("DELETE FROM messages WHERE id = ?", (row_id,))
        return "deleted"

    def set_flagged(self, row_id: int, flagged: bool = True) -> None:
        self._exec("UPDATE messages SET flagged = ? WHERE id = ?", (int(flagged), row_id))

    def move_many(self, row_ids: Iterable[int], folder: str) -> list[tuple[int, str]]:
        """Move messages; returns (id, folder it was in) for each, which `restore` undoes."""
        before: list[tuple[int, str]] = []
        with self._lock:
            for row_id in row_ids:
                row = self._db.execute("SELECT folder FROM messages WHERE id = ?", (row_id,))
                found = row.fetchone()
                if found is None:
                    continue
                before.append((row_id, str(found[0])))
                self._db.execute("UPDATE messages SET folder = ? WHERE id = ?", (folder, row_id))
        return before

    def restore(self, moves: Iterable[tuple[int, str]]) -> int:
        """Put messages back where `move_many` found them; how many were still there."""
        done = 0
        for row_id, folder in moves:
            done += self._exec("UPDATE messages SET folder = ? WHERE id = ?", (folder, row_id))
        return done

    def mark_all_read(self, account: str, folder: str) -> int:
        return self._exec(
            "UPDATE messages SET read = 1 WHERE account = ? AND folder = ? AND read = 0",
            (account, folder),
        )

    def messages(self, account: str) -> list[StoredMessage]:
        """Every message of an account but those in Trash, newest first (search filters it)."""
        rows = self._rows(
            "SELECT * FROM messages WHERE account = ? AND folder != 'Trash'"
            " ORDER BY timestamp DESC, id DESC",
            (account,),
        )
        return [self._message(r) for r in rows]

    def inboxes(self, accounts: Iterable[str]) -> list[StoredMessage]:
        """The combined inbox: every given account's Inbox, threads together."""
        names = list(accounts)
        if not names:
            return []
        marks = ",".join("?" * len(names))
        rows = self._rows(
            f"SELECT * FROM messages WHERE folder = 'Inbox' AND account IN ({marks})"
            " ORDER BY timestamp, id",
            tuple(names),
        )
        return order_threads([self._message(r) for r in rows])
