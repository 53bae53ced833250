"""RECEIVE (SPEC §5): page through a mailbox, oldest first. Needs AUTH as `email`.

`since` is the opaque cursor of an earlier answer; what it holds is the server's business
(`protocol.py` reads it), so here it is only a string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import BAD_REQUEST, MMTPError
from ..limits import DEFAULT_RECEIVE_LIMIT, MAX_RECEIVE_LIMIT
from ._fields import answer_bool, answer_int, answer_objects, answer_of, answer_str, email_of, ok

ACTION = "RECEIVE"
ANSWER = answer_of(ACTION)
BAD_CURSOR = "since must be a cursor returned by an earlier RECEIVE"


@dataclass(frozen=True)
class ReceiveRequest:
    ACTION: ClassVar[str] = ACTION
    email: str
    since: str | None = None
    # None leaves the choice to the server (DEFAULT_RECEIVE_LIMIT).
    limit: int | None = None

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"email": self.email}
        if self.since is not None:
            data["since"] = self.since
        if self.limit is not None:
            data["limit"] = self.limit
        return data

    @property
    def page_size(self) -> int:
        return DEFAULT_RECEIVE_LIMIT if self.limit is None else self.limit

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> ReceiveRequest:
        email = email_of(data)
        since = data.get("since")
        if since is not None and not isinstance(since, str):
            raise MMTPError(BAD_REQUEST, BAD_CURSOR)
        limit = data.get("limit", DEFAULT_RECEIVE_LIMIT)
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 1 <= limit <= MAX_RECEIVE_LIMIT
        ):
            raise MMTPError(BAD_REQUEST, f"limit must be an integer from 1 to {MAX_RECEIVE_LIMIT}")
        return cls(email=email, since=since, limit=limit)


@dataclass
class ReceiveAnswer:
    # Packets as stored, with the server's `meta.receivedAt` and `signatureVerified`.
    messages: list[dict[str, Any]]
    count: int
    more: bool
    # Points just past the last message: pass it as `since` to get what comes next.
    cursor: str

    def to_response(self) -> dict[str, Any]:
        return ok(
            {
                "messages": self.messages,
                "count": self.count,
                "more": self.more,
                "cursor": self.cursor,
            }
        )

    @classmethod
    def from_response(cls, response: dict[str, Any]) -> ReceiveAnswer:
        return cls(
            messages=answer_objects(response, "messages", ANSWER),
            count=answer_int(response, "count", ANSWER),
            more=answer_bool(response, "more", ANSWER),
            cursor=answer_str(response, "cursor", ANSWER),
        )
