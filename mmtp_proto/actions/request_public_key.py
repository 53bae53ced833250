"""REQUEST_PUBLIC_KEY (SPEC §5): fetch the key registered for an address. No AUTH needed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ._fields import answer_bool, answer_of, answer_str, email_of, ok

ACTION = "REQUEST_PUBLIC_KEY"
ANSWER = answer_of(ACTION)


@dataclass(frozen=True)
class RequestPublicKeyRequest:
    ACTION: ClassVar[str] = ACTION
    email: str

    def to_data(self) -> dict[str, Any]:
        return {"email": self.email}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> RequestPublicKeyRequest:
        return cls(email=email_of(data))


@dataclass(frozen=True)
class RequestPublicKeyAnswer:
    email: str
    public_key: str  # ASCII-armored
    fingerprint: str
    # SPEC revision 2: the key was fetched from the address's own domain server (§8.4).
    remote: bool = False

    def to_response(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "email": self.email,
            "publicKey": self.public_key,
            "fingerprint": self.fingerprint,
        }
        if self.remote:
            fields["remote"] = True
        return ok(fields)

    @classmethod
    def from_response(cls, response: dict[str, Any]) -> RequestPublicKeyAnswer:
        return cls(
            email=answer_str(response, "email", ANSWER),
            public_key=answer_str(response, "publicKey", ANSWER),
            fingerprint=answer_str(response, "fingerprint", ANSWER),
            remote=answer_bool(response, "remote", ANSWER, default=False),
        )
