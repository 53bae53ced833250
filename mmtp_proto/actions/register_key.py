"""REGISTER_KEY (SPEC §5): publish the OpenPGP public key of a local address.

The first registration wins; replacing a key needs AUTH as the address, renewing it (same
primary key) does not. Whether the key is acceptable (public, self-signed, not expired, user
id matching) is `pgp.py`'s to judge; here only its shape and size are checked, before any
OpenPGP parsing. `invite` is the one-time token of SPEC §5's invite policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import BAD_REQUEST, KEY_INVALID, MMTPError
from ..limits import MAX_KEY_ARMOR_CHARS
from ._fields import answer_of, answer_str, answer_text, email_of, ok

ACTION = "REGISTER_KEY"
ANSWER = answer_of(ACTION)


@dataclass(frozen=True)
class RegisterKeyRequest:
    ACTION: ClassVar[str] = ACTION
    email: str
    public_key: str  # ASCII-armored
    invite: str | None = None

    def to_data(self) -> dict[str, Any]:
        data = {"email": self.email, "publicKey": self.public_key}
        if self.invite is not None:
            data["invite"] = self.invite
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> RegisterKeyRequest:
        email = email_of(data)
        armored = data.get("publicKey")
        if not isinstance(armored, str):
            raise MMTPError(KEY_INVALID, "publicKey must be an ASCII-armored OpenPGP key")
        if len(armored) > MAX_KEY_ARMOR_CHARS:
            raise MMTPError(
                KEY_INVALID,
                f"publicKey is over {MAX_KEY_ARMOR_CHARS // 1024} KiB; a real key is a few KiB. "
                "Export only your own key (gpg --armor --export-options export-minimal "
                "--export ADDRESS)",
            )
        invite = data.get("invite")
        if invite is not None and (not isinstance(invite, str) or not 0 < len(invite) <= 200):
            raise MMTPError(BAD_REQUEST, "invite must be the token the operator gave you")
        return cls(email=email, public_key=armored, invite=invite)


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
