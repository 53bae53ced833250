"""SEND (SPEC §3–§5): deliver one packet. The packet's rules live in `packet.py` and the
stamp's in `hashcash.py`; this module only carries the packet and reads the answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ._fields import answer_bool, answer_of, answer_str, answer_text, ok

ACTION = "SEND"
ANSWER = answer_of(ACTION)


@dataclass(frozen=True)
class SendRequest:
    ACTION: ClassVar[str] = ACTION
    # Left as sent: `packet.validate_packet` judges it, naming each bad field.
    packet: Any

    def to_data(self) -> dict[str, Any]:
        return {"packet": self.packet}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> SendRequest:
        return cls(packet=data.get("packet"))


@dataclass(frozen=True)
class SendAnswer:
    message_id: str
    encrypted: bool
    signed: bool
    signature_verified: bool
    # True when this messageId and content were already stored: nothing new was kept.
    duplicate: bool = False
    message: str = ""
    # SPEC revision 2: True when the packet waits in the outbound queue of a relaying server,
    # False when it is in a local mailbox; None when the server does not say (revision 1).
    queued: bool | None = None

    def to_response(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "message": self.message,
            "duplicate": self.duplicate,
            "messageId": self.message_id,
            "encrypted": self.encrypted,
            "signed": self.signed,
            "signatureVerified": self.signature_verified,
        }
        if self.queued is not None:
            fields["queued"] = self.queued
        return ok(fields)

    @classmethod
    def from_response(cls, response: dict[str, Any]) -> SendAnswer:
        queued = response.get("queued")
        return cls(
            message_id=answer_str(response, "messageId", ANSWER),
            encrypted=answer_bool(response, "encrypted", ANSWER),
            signed=answer_bool(response, "signed", ANSWER),
            signature_verified=answer_bool(response, "signatureVerified", ANSWER),
            duplicate=answer_bool(response, "duplicate", ANSWER, default=False),
            message=answer_text(response),
            queued=answer_bool(response, "queued", ANSWER) if queued is not None else None,
        )
