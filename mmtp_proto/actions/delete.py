"""DELETE (SPEC §5): remove messages from a mailbox by id. Needs AUTH as `email`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import BAD_REQUEST, MMTPError
from ..limits import MAX_DELETE_IDS
from ..packet import is_message_id
from ._fields import answer_int, answer_of, email_of, ok

ACTION = "DELETE"
ANSWER = answer_of(ACTION)


@dataclass(frozen=True)
class DeleteRequest:
    ACTION: ClassVar[str] = ACTION
    email: str
    message_ids: list[str]

    def to_data(self) -> dict[str, Any]:
        return {"email": self.email, "messageIds": list(self.message_ids)}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> DeleteRequest:
        email = email_of(data)
        ids = data.get("messageIds")
        if not isinstance(ids, list) or len(ids) > MAX_DELETE_IDS:
            raise MMTPError(
                BAD_REQUEST, f"messageIds must be a list of at most {MAX_DELETE_IDS} ids"
            )
        if not all(is_message_id(i) for i in ids):
            raise MMTPError(BAD_REQUEST, "every messageId must be 32 lowercase hex")
        return cls(email=email, message_ids=ids)


@dataclass(frozen=True)
class DeleteAnswer:
    # How many of the given ids were removed (unknown ids count 0).
    deleted: int

    def to_response(self) -> dict[str, Any]:
        return ok({"deleted": self.deleted})

    @classmethod
    def from_response(cls, response: dict[str, Any]) -> DeleteAnswer:
        return cls(deleted=answer_int(response, "deleted", ANSWER))
