"""The Outbox table: messages that could not be sent yet, with what is known of the server
(the stamp difficulty it last asked for, so a stamp can be minted offline)."""

from __future__ import annotations

import json
import time
from typing import Any

from mmtp_proto.outgoing import Outgoing

from .database import Database
from .records import Delivery, Queued, Recipient


class OutboxTable(Database):
    def queue(
        self,
        account: str,
        outgoing: Outgoing,
        packet: dict[str, Any] | None,
        recipients: list[Recipient] | None = None,
    ) -> int:
        """Keep a message that could not be sent now (with its stamped packet, if made; for
        several recipients, each recipient's packet and state)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO outbox (account, outgoing, packet, created, recipients)"
                " VALUES (?,?,?,?,?)",
                (
                    account,
                    json.dumps(outgoing.to_dict()),
                    json.dumps(packet) if packet is not None else None,
                    int(time.time()),
                    _dump(recipients),
                ),
            )
            return int(cur.lastrowid or 0)

    def set_recipients(self, queued_id: int, recipients: list[Recipient]) -> None:
        """Write down how far each recipient got (after every one: a server that goes away
        halfway leaves the entry holding exactly the recipients still unsent)."""
        self._exec("UPDATE outbox SET recipients = ? WHERE id = ?", (_dump(recipients), queued_id))

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
                recipients=_load(row["recipients"]),
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

    # ------------------------------------------------------------------ deliveries

    def set_delivery(
        self,
        account: str,
        message_id: str,
        address: str,
        state: str,
        error: str = "",
        *,
        kind: str = "to",
    ) -> None:
        """What became of `message_id` for `address` (queued, sent, failed)."""
        self._exec(
            "INSERT INTO deliveries (account, message_id, address, kind, state, error, updated)"
            " VALUES (?,?,?,?,?,?,?) ON CONFLICT(account, message_id, address) DO UPDATE SET"
            " state = excluded.state, error = excluded.error, updated = excluded.updated",
            (account, message_id, address, kind, state, error, int(time.time())),
        )

    def deliveries(self, account: str, message_id: str) -> list[Delivery]:
        """Each recipient's state for a message sent to several, in the order they were
        first written down; empty for a message sent the ordinary way."""
        rows = self._rows(
            "SELECT address, state, error, updated, kind FROM deliveries"
            " WHERE account = ? AND message_id = ? ORDER BY rowid",
            (account, message_id),
        )
        return [Delivery(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def _dump(recipients: list[Recipient] | None) -> str | None:
    return json.dumps([r.to_dict() for r in recipients]) if recipients else None


def _load(text: str | None) -> list[Recipient]:
    if not text:
        return []
    data = json.loads(text)
    return (
        [Recipient.from_dict(r) for r in data if isinstance(r, dict)]
        if isinstance(data, list)
        else []
    )
