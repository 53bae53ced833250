"""What the protocol layer knows about one connection, and the shape of one answer."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .errors import MMTPError


@dataclass
class Session:
    """Per-connection protocol state."""

    peer: str
    tls: bool
    nonce: str = field(default_factory=lambda: secrets.token_hex(16))
    authenticated: str | None = None
    # The key AUTH was proven with: when the address's key is replaced by someone else's
    # connection, this one stops counting as authenticated.
    auth_fingerprint: str | None = None
    # DOMAIN_AUTH (SPEC §8.3): the remote domain this connection speaks for, and which of
    # our domains it routed to.
    domain: str | None = None
    receiver_domain: str | None = None


@dataclass
class Outcome:
    response: dict[str, Any]
    # True when the answer promises something was stored: it must wait for the commit.
    durable: bool = False
    close: bool = False
    action: str = "-"
    # Set when the write behind a durable answer is checked only at the commit (PostgreSQL
    # pipelines a round's SENDs): called then, it gives the answer to send instead, if any.
    settle: Callable[[], dict[str, Any] | None] | None = None


def ok(**fields: Any) -> dict[str, Any]:
    return {"status": "OK", **fields}


def cursor(seq: int) -> str:
    return f"s{seq}"


def parse_cursor(value: object) -> int:
    if value is None:
        return 0
    if (
        isinstance(value, str)
        and len(value) < 20
        and value[:1] == "s"
        and value[1:].isascii()
        and value[1:].isdigit()
    ):
        return int(value[1:])
    raise MMTPError(errors.BAD_REQUEST, "since must be a cursor returned by an earlier RECEIVE")


def storage_failure() -> MMTPError:
    return MMTPError(
        errors.INTERNAL,
        "the server could not store this durably (storage error); nothing was kept — retry later",
    )
