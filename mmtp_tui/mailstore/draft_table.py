"""Drafts (the whole Outgoing of a compose put aside) and each account's fetch cursor."""

from __future__ import annotations

import json
import sqlite3
import time

from mmtp_proto.outgoing import Outgoing

from .database import Database
from .records import Draft


class DraftTable(Database):
    def save_draft(self, account: str, outgoing: Outgoing, *, draft_id: int | None = None) -> int:
        """Keep ``outgoing`` as a draft; with the ``draft_id`` of an existing draft, update
        that one (saving the same compose again must not pile up copies). Returns the id."""
        data = json.dumps(outgoing.to_dict())
        legacy = (
            ", ".join(outgoing.recipients()),
            outgoing.subject,
            outgoing.body,
            outgoing.in_reply_to,
            json.dumps(outgoing.references),
        )
        now = int(time.time())
        with self._lock:
            if draft_id is not None:
                cur = self._db.execute(
                    "UPDATE drafts SET recipient=?, subject=?, body=?, in_reply_to=?, refs=?,"
                    " outgoing=?, updated=? WHERE id=? AND account=?",
                    (*legacy, data, now, draft_id, account),
                )
                if cur.rowcount == 1:
                    return draft_id
            cur = self._db.execute(
                "INSERT INTO drafts (account, recipient, subject, body, in_reply_to, refs,"
                " outgoing, updated) VALUES (?,?,?,?,?,?,?,?)",
                (account, *legacy, data, now),
            )
            return int(cur.lastrowid or 0)

    @staticmethod
    def _draft(row: sqlite3.Row) -> Draft:
        if row["outgoing"]:
            outgoing = Outgoing.from_dict(json.loads(row["outgoing"]))
        else:  # written before drafts kept the whole Outgoing
            outgoing = Outgoing(
                to=[row["recipient"]] if row["recipient"] else [],
                subject=row["subject"],
                body=row["body"],
                in_reply_to=row["in_reply_to"],
                references=json.loads(row["refs"]),
            )
        return Draft(row["id"], row["account"], outgoing, row["updated"])

    def drafts(self, account: str) -> list[Draft]:
        rows = self._rows(
            "SELECT * FROM drafts WHERE account = ? ORDER BY updated DESC, id DESC", (account,)
        )
        return [self._draft(row) for row in rows]

    def draft(self, draft_id: int) -> Draft | None:
        rows = self._rows("SELECT * FROM drafts WHERE id = ?", (draft_id,))
        return self._draft(rows[0]) if rows else None

    def delete_draft(self, draft_id: int) -> None:
        self._exec("DELETE FROM drafts WHERE id = ?", (draft_id,))

    # ------------------------------------------------------------------ cursors

    def cursor(self, account: str) -> str | None:
        rows = self._rows("SELECT cursor FROM cursors WHERE account = ?", (account,))
        return str(rows[0][0]) if rows else None

    def set_cursor(self, account: str, cursor: str) -> None:
        self._exec(
            "INSERT INTO cursors (account, cursor) VALUES (?, ?)"
            " ON CONFLICT(account) DO UPDATE SET cursor = excluded.cursor",
            (account, cursor),
        )
