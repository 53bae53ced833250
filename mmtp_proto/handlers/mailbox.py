"""RECEIVE, CHECK and DELETE (SPEC §5): a mailbox, read and emptied by its authenticated owner."""

from __future__ import annotations

import logging
from typing import Any

from ..actions import (
    CheckAnswer,
    CheckRequest,
    DeleteAnswer,
    DeleteRequest,
    ReceiveAnswer,
    ReceiveRequest,
    email_of,
)
from ..limits import RECEIVE_BYTE_BUDGET, TIMESTAMP_SLACK_SECONDS
from ..protocol_base import ProtocolBase
from ..session import Outcome, Session, cursor, parse_cursor

# The audit lines (who authenticated, key changes, deletions) share the protocol's logger.
log = logging.getLogger("mmtp.protocol")


class MailboxHandlers(ProtocolBase):
    def _receive(self, session: Session, data: dict[str, Any], now: int) -> Outcome:
        # The owner is checked before the rest of the request is judged.
        self._require_auth_as(session, email_of(data))
        request = ReceiveRequest.from_data(data)
        after = parse_cursor(request.since)
        messages, more = self.store.list_messages(
            request.email, after, request.page_size, max_bytes=RECEIVE_BYTE_BUDGET
        )
        last = messages[-1].seq if messages else after
        return Outcome(
            ReceiveAnswer(
                messages=[m.packet for m in messages],
                count=len(messages),
                more=more,
                cursor=cursor(last),
            ).to_response()
        )

    def _check(self, session: Session, data: dict[str, Any], now: int) -> Outcome:
        request = CheckRequest.from_data(data)
        self._require_auth_as(session, request.email)
        return Outcome(CheckAnswer(count=self.store.count_messages(request.email)).to_response())

    def _delete(self, session: Session, data: dict[str, Any], now: int) -> Outcome:
        self._require_auth_as(session, email_of(data))
        request = DeleteRequest.from_data(data)
        # Each deleted message leaves a tombstone for as long as its packet could be sent
        # again (its timestamp is accepted until stampValiditySeconds + 1 h): a re-send then
        # answers "duplicate" and stores nothing (SPEC §5).
        deleted = self.store.delete_messages(
            request.email,
            request.message_ids,
            tombstone_seconds=self.config.stamp_validity_seconds + TIMESTAMP_SLACK_SECONDS,
        )
        log.info(
            "audit: %s deleted %d of %d from %s",
            session.peer,
            deleted,
            len(request.message_ids),
            request.email,
        )
        return Outcome(DeleteAnswer(deleted=deleted).to_response(), durable=deleted > 0)
