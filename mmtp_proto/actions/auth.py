"""AUTH (SPEC §5): prove, by signing this connection's challenge, that one holds the key
registered for `email`. The challenge itself is built in `canonical.auth_challenge`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import BAD_REQUEST, MMTPError
from ..packet import MAX_SIGNATURE_CHARS
from ._fields import answer_of, answer_str, answer_text, email_of, ok

ACTION = "AUTH"
ANSWER = answer_of(ACTION)


@dataclass(frozen=True)
class AuthRequest:
    ACTION: ClassVar[str] = ACTION
    email: str
    signature: str  # ASCII-armored detached signature of the challenge

    def to_data(self) -> dict[str, Any]:
        return {"email": self.email, "signature": self.signature}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> AuthRequest:
        email = email_of(data)
        signature = data.get("signature")
        # The same bound as a message signature: a real detached signature is under 2 KB,
        # and PGPy parses every (unhashed) subpacket of a padded one on the loop thread.
        if not isinstance(signature, str) or len(signature) > MAX_SIGNATURE_CHARS:
            raise MMTPError(
                BAD_REQUEST,
                "data.signature must be an ASCII-armored detached signature of at most "
                f"{MAX_SIGNATURE_CHARS} characters",
            )
        return cls(email=email, signature=signature)


@dataclass(frozen=True)
class AuthAnswer:
    # The address the connection is now authenticated as (lowercased by the server).
    email: str
    message: str = ""

    def to_response(self) -> dict[str, Any]:
        return ok({"message": self.message, "email": self.email})

    @classmethod
    def from_response(cls, response: dict[str, Any]) -> AuthAnswer:
        return cls(email=answer_str(response, "email", ANSWER), message=answer_text(response))
