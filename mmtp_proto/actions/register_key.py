"""REGISTER_KEY (SPEC §5): publish the OpenPGP public key of a local address.

The first registration wins; replacing a key needs AUTH as the address. Whether the key is
acceptable (public, self-signed, not expired, user id matching) is `pgp.py`'s to judge; here
only its shape and size are checked, before any OpenPGP parsing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import KEY_INVALID, MMTPError
from ..limits import MAX_ARMOR_CHARS
from ._fields import answer_of, answer_str, answer_text, email_of, ok

ACTION = "REGISTER_KEY"
ANSWER = answer_of(ACTION)


@dataclass(frozen=True)
class RegisterKeyRequest:
    ACTION: ClassVar[str] = ACTION
    email: str
    public_key: str  # ASCII-armored

    def to_data(self) -> dict[str, Any]:
        return {"email": self.email, "publicKey": self.public_key}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> RegisterKeyRequest:
        email = email_of(data)
        armored = data.get("publicKey")
        if not isinstance(armored, str) or len(armored) > MAX_ARMOR_CHARS:
            raise MMTPError(KEY_INVALID, "publicKey must be an ASCII-armored OpenPGP key")
        return cls(email=email, public_key=armored)


@dataclass(frozen=True)
class RegisterKeyAnswer:
    fingerprint: str
    message: str = ""

    def to_response(self) -> dict[str, Any]:
        return ok({"message": self.message, "fingerprint": self.fingerprint})

    @classmethod
    def from_response(cls, response: dict[str, Any]) -> RegisterKeyAnswer:
        return cls(
            fingerprint=answer_str(response, "fingerprint", ANSWER),
            message=answer_text(response),
        )
