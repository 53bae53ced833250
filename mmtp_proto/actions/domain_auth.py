"""DOMAIN_AUTH (SPEC §8.3): a relaying server proves it speaks for its domain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import BAD_REQUEST, MMTPError
from ._domain import domain_of_data
from ._fields import answer_of, answer_str, ok

ACTION = "DOMAIN_AUTH"
ANSWER = answer_of(ACTION)
# base64 of a 64-byte Ed25519 signature is 88 characters; a key id is 16 hex.
_MAX_FIELD = 200


@dataclass(frozen=True)
class DomainAuthRequest:
    ACTION: ClassVar[str] = ACTION
    domain: str
    key_id: str
    signature: str  # standard base64 of the Ed25519 signature

    def to_data(self) -> dict[str, Any]:
        return {"domain": self.domain, "keyId": self.key_id, "signature": self.signature}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> DomainAuthRequest:
        domain = domain_of_data(data)
        values = []
        for key in ("keyId", "signature"):
            value = data.get(key)
            if not isinstance(value, str) or not value or len(value) > _MAX_FIELD:
                raise MMTPError(BAD_REQUEST, f"data.{key} must be a short string")
            values.append(value)
        return cls(domain=domain, key_id=values[0], signature=values[1])


@dataclass(frozen=True)
class DomainAuthAnswer:
    domain: str

    def to_response(self) -> dict[str, Any]:
        return ok({"domain": self.domain})

    @classmethod
    def from_response(cls, response: dict[str, Any]) -> DomainAuthAnswer:
        return cls(domain=answer_str(response, "domain", ANSWER))
