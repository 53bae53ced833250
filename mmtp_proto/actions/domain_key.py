"""DOMAIN_KEY (SPEC §8.3): the Ed25519 keys a domain's server signs DOMAIN_AUTH with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ._domain import domain_of_data
from ._fields import answer_int, answer_objects, answer_of, answer_str, ok

ACTION = "DOMAIN_KEY"
ANSWER = answer_of(ACTION)


@dataclass(frozen=True)
class DomainKeyRequest:
    ACTION: ClassVar[str] = ACTION
    domain: str

    def to_data(self) -> dict[str, Any]:
        return {"domain": self.domain}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> DomainKeyRequest:
        return cls(domain=domain_of_data(data))


@dataclass(frozen=True)
class DomainKeyAnswer:
    domain: str
    # [{"id", "alg", "publicKey"}]: the verifier recomputes every id (domain_keys.parse_key_list).
    keys: list[dict[str, Any]] = field(default_factory=list)
    ttl: int = 3600

    def to_response(self) -> dict[str, Any]:
        return ok({"domain": self.domain, "keys": list(self.keys), "ttl": self.ttl})

    @classmethod
    def from_response(cls, response: dict[str, Any]) -> DomainKeyAnswer:
        return cls(
            domain=answer_str(response, "domain", ANSWER),
            keys=answer_objects(response, "keys", ANSWER),
            ttl=answer_int(response, "ttl", ANSWER),
        )
