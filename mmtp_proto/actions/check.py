"""CHECK (SPEC §5): how many messages wait in a mailbox. Needs AUTH as `email`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ._fields import answer_int, answer_of, email_of, ok

ACTION = "CHECK"
ANSWER = answer_of(ACTION)


@dataclass(frozen=True)
class CheckRequest:
    ACTION: ClassVar[str] = ACTION
    email: str

    def to_data(self) -> dict[str, Any]:
        return {"email": self.email}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> CheckRequest:
        return cls(email=email_of(data))


@dataclass(frozen=True)
class CheckAnswer:
    count: int

    def to_response(self) -> dict[str, Any]:
        return ok({"count": self.count})

    @classmethod
    def from_response(cls, response: dict[str, Any]) -> CheckAnswer:
        return cls(count=answer_int(response, "count", ANSWER))
