"""The greeting (SPEC §1): the frame a server sends first on every connection.

A client needs `server` and `nonce` (they make the AUTH challenge) and takes everything else
with a fallback, so an older or newer server still works: a greeting without `difficulty`
means DEFAULT_DIFFICULTY. Unknown keys, in the greeting and in `features`, are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..limits import DEFAULT_DIFFICULTY, MAX_RECEIVE_LIMIT
from ._fields import answer_bool, answer_int, answer_object, answer_str, answer_strings, ok

WHAT = "the server's greeting"
READY = "MMTP Server Ready"


def _optional_int(response: dict[str, Any], key: str) -> int | None:
    return answer_int(response, key, WHAT) if key in response else None


@dataclass(frozen=True)
class Features:
    plain_auth: bool = False
    pipelining: bool = False
    relay: bool = False
    max_receive_limit: int = MAX_RECEIVE_LIMIT
    # SPEC §5: "open", "invite" or "closed"; a server that does not say is open.
    registration: str = "open"

    def to_data(self) -> dict[str, Any]:
        return {
            "plainAuth": self.plain_auth,
            "pipelining": self.pipelining,
            "relay": self.relay,
            "maxReceiveLimit": self.max_receive_limit,
            "registration": self.registration,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Features:
        limit = _optional_int(data, "maxReceiveLimit")
        return cls(
            plain_auth=answer_bool(data, "plainAuth", WHAT, default=False),
            pipelining=answer_bool(data, "pipelining", WHAT, default=False),
            relay=answer_bool(data, "relay", WHAT, default=False),
            max_receive_limit=MAX_RECEIVE_LIMIT if limit is None else limit,
            registration=(
                answer_str(data, "registration", WHAT) if "registration" in data else "open"
            ),
        )


@dataclass(frozen=True)
class Greeting:
    # "<name>/<version>": part of the AUTH challenge.
    server: str
    # Fresh per connection: part of the AUTH challenge.
    nonce: str
    protocol: str = ""
    domains: list[str] = field(default_factory=list)
    difficulty: int = DEFAULT_DIFFICULTY
    max_frame_bytes: int | None = None
    stamp_validity_seconds: int | None = None
    tls: bool = False
    features: Features = field(default_factory=Features)
    actions: list[str] = field(default_factory=list)
    message: str = READY

    def to_response(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "message": self.message,
            "protocol": self.protocol,
            "server": self.server,
            "domains": list(self.domains),
            "difficulty": self.difficulty,
        }
        if self.max_frame_bytes is not None:
            fields["maxFrameBytes"] = self.max_frame_bytes
        if self.stamp_validity_seconds is not None:
            fields["stampValiditySeconds"] = self.stamp_validity_seconds
        fields.update(
            nonce=self.nonce,
            tls=self.tls,
            features=self.features.to_data(),
            actions=list(self.actions),
        )
        return ok(fields)

    @classmethod
    def from_response(cls, response: dict[str, Any]) -> Greeting:
        features = answer_object(response, "features", WHAT) if "features" in response else {}
        domains = answer_strings(response, "domains", WHAT) if "domains" in response else []
        actions = answer_strings(response, "actions", WHAT) if "actions" in response else []
        difficulty = _optional_int(response, "difficulty")
        message = response.get("message")
        return cls(
            server=answer_str(response, "server", WHAT),
            nonce=answer_str(response, "nonce", WHAT),
            protocol=answer_str(response, "protocol", WHAT) if "protocol" in response else "",
            domains=domains,
            difficulty=DEFAULT_DIFFICULTY if difficulty is None else difficulty,
            max_frame_bytes=_optional_int(response, "maxFrameBytes"),
            stamp_validity_seconds=_optional_int(response, "stampValiditySeconds"),
            tls=answer_bool(response, "tls", WHAT, default=False),
            features=Features.from_data(features),
            actions=actions,
            message=message if isinstance(message, str) else "",
        )
