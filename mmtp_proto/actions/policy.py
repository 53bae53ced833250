"""POLICY (SPEC §8.4): what a stamp for a domain must be. No AUTH needed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ._domain import domain_of_data
from ._fields import answer_bool, answer_int, answer_of, answer_str, ok

ACTION = "POLICY"
ANSWER = answer_of(ACTION)


@dataclass(frozen=True)
class PolicyRequest:
    ACTION: ClassVar[str] = ACTION
    domain: str

    def to_data(self) -> dict[str, Any]:
        return {"domain": self.domain}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> PolicyRequest:
        return cls(domain=domain_of_data(data))


@dataclass(frozen=True)
class PolicyAnswer:
    domain: str
    local: bool
    difficulty: int
    stamp_validity_seconds: int
    max_frame_bytes: int

    def to_response(self) -> dict[str, Any]:
        return ok(
            {
                "domain": self.domain,
                "local": self.local,
                "difficulty": self.difficulty,
                "stampValiditySeconds": self.stamp_validity_seconds,
                "maxFrameBytes": self.max_frame_bytes,
            }
        )

    @classmethod
    def from_response(cls, response: dict[str, Any]) -> PolicyAnswer:
        return cls(
            domain=answer_str(response, "domain", ANSWER),
            local=answer_bool(response, "local", ANSWER),
            difficulty=answer_int(response, "difficulty", ANSWER),
            stamp_validity_seconds=answer_int(response, "stampValiditySeconds", ANSWER),
            max_frame_bytes=answer_int(response, "maxFrameBytes", ANSWER),
        )
