"""The Outbox table: messages that could not be sent yet, with what is known of the server
(the stamp difficulty it last asked for, so a stamp can be minted offline)."""

from __future__ import annotations

import json
import time
from typing import Any

from mmtp_proto.outgoing import Outgoing

from .database import Database
from .records import Queued


class OutboxTable(Database):
    def queue(self, account: str, outgoing: Outgoing, packet: dict[str, Any] | None) -> int:
        """Keep a message that could not be sent now (with its stamped packet, if made)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO outbox (account, outgoing, packet, created) VALUES (?,?,?,?)",
                (
                    account,
                    json.dumps(outgoing.to_dict()),
                    json.dumps(packet) if packet is not None else None,
                    int(time.time()),
                ),
            )
            return int(cur.lastrowid or 0)

    def outbox(self, account: str) -> list[Queued]:
        rows = self._rows("SELECT * FROM outbox WHERE account = ? ORDER BY id", (account,))
        return [
            Queued(
                id=row["id"],
                account=row["account"],
                outgoing=Outgoing.from_dict(json.loads(row["outgoing"])),
                packet=json.loads(row["packet"]) if row["packet"] else None,
                created=row["created"],
                attempts=row["attempts"],
                last_error=row["last_error"],
            )
            for row in rows
        ]

    def queued(self, queued_id: int) -> Queued | None:
        rows = self._rows("SELECT account FROM outbox WHERE id = ?", (queued_id,))
        if not rows:
            return None
        return next((q for q in self.outbox(str(rows[0][0])) if q.id == queued_id), None)

    def unqueue(self, queued_id: int) -> None:
        self._exec("DELETE FROM outbox WHERE id = ?", (queued_id,))

    def queue_failed(self, queued_id: int, error: str) -> None:
        self._exec(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
            (error, queued_id),
        )

    def set_difficulty(self, account: str, bits: int) -> None:
        """The stamp bits the account's server last asked for (an offline stamp uses them)."""
        self._exec(
            "INSERT INTO server_facts (account, difficulty) VALUES (?, ?)"
            " ON CONFLICT(account) DO UPDATE SET difficulty = excluded.difficulty",
            (account, bits),
        )

    def difficulty(self, account: str) -> int | None:
        rows = self._rows("SELECT difficulty FROM server_facts WHERE account = ?", (account,))
        return int(rows[0][0]) if rows else None
