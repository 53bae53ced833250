"""The one error vocabulary of MMTP (SPEC §6), shared by parser, server and client."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

BAD_JSON = "BAD_JSON"
BAD_REQUEST = "BAD_REQUEST"
UNKNOWN_ACTION = "UNKNOWN_ACTION"
FRAME_TOO_LARGE = "FRAME_TOO_LARGE"
INVALID_ADDRESS = "INVALID_ADDRESS"
HASH_MISMATCH = "HASH_MISMATCH"
POW_REQUIRED = "POW_REQUIRED"
POW_INVALID = "POW_INVALID"
POW_INSUFFICIENT = "POW_INSUFFICIENT"
POW_EXPIRED = "POW_EXPIRED"
POW_MISMATCH = "POW_MISMATCH"
POW_REPLAYED = "POW_REPLAYED"
SIGNATURE_INVALID = "SIGNATURE_INVALID"
KEY_INVALID = "KEY_INVALID"
KEY_NOT_FOUND = "KEY_NOT_FOUND"
KEY_EXISTS = "KEY_EXISTS"
AUTH_REQUIRED = "AUTH_REQUIRED"
AUTH_FAILED = "AUTH_FAILED"
TLS_REQUIRED = "TLS_REQUIRED"
FORBIDDEN = "FORBIDDEN"
UNKNOWN_RECIPIENT = "UNKNOWN_RECIPIENT"
NOT_LOCAL = "NOT_LOCAL"
RATE_LIMITED = "RATE_LIMITED"
TOO_MANY_CONNECTIONS = "TOO_MANY_CONNECTIONS"
MAILBOX_FULL = "MAILBOX_FULL"
INTERNAL = "INTERNAL"
# Revision 2 (SPEC §6, §8): relaying to another domain's server.
NO_ROUTE = "NO_ROUTE"
REMOTE_UNAVAILABLE = "REMOTE_UNAVAILABLE"
REMOTE_REFUSED = "REMOTE_REFUSED"

ALL_CODES = frozenset(
    {
        BAD_JSON,
        BAD_REQUEST,
        UNKNOWN_ACTION,
        FRAME_TOO_LARGE,
        INVALID_ADDRESS,
        HASH_MISMATCH,
        POW_REQUIRED,
        POW_INVALID,
        POW_INSUFFICIENT,
        POW_EXPIRED,
        POW_MISMATCH,
        POW_REPLAYED,
        SIGNATURE_INVALID,
        KEY_INVALID,
        KEY_NOT_FOUND,
        KEY_EXISTS,
        AUTH_REQUIRED,
        AUTH_FAILED,
        TLS_REQUIRED,
        FORBIDDEN,
        UNKNOWN_RECIPIENT,
        NOT_LOCAL,
        RATE_LIMITED,
        TOO_MANY_CONNECTIONS,
        MAILBOX_FULL,
        INTERNAL,
        NO_ROUTE,
        REMOTE_UNAVAILABLE,
        REMOTE_REFUSED,
    }
)


# Codes are SPEC §6 words; an unknown one still has that shape (servers may grow).
_CODE_SHAPE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
MAX_REMOTE_MESSAGE_CHARS = 1000
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def untrusted_text(text: object, limit: int) -> str:
    """Text from another party made safe to log, store and show: control and format
    characters (newlines, escapes, bidi overrides) become spaces, runs of white space one
    space, at most `limit` characters (cut with an ellipsis)."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    kept = "".join(
        " " if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch for ch in text[: limit * 4]
    )
    collapsed = " ".join(kept.split())
    if len(collapsed) > limit:
        collapsed = collapsed[: limit - 1].rstrip() + "…"
    return collapsed


class MMTPError(Exception):
    """A protocol-level failure: an SPEC §6 code plus words a user understands.

    The server turns it into an ERROR frame; the client raises it back from one.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def to_response(self) -> dict[str, Any]:
        return {
            "status": "ERROR",
            "error": {"code": self.code, "message": self.message},
            "message": self.message,
        }

    @classmethod
    def from_response(cls, response: dict[str, Any]) -> MMTPError:
        error = response.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            message = error.get("message") or response.get("message") or ""
        else:
            code, message = INTERNAL, response.get("message") or "the server gave no reason"
        # The other side's words are untrusted: they reach logs, DSNs and the people who read
        # them. A code that is not shaped like one is INTERNAL (retried, like any unknown
        # code); the message loses control characters and length.
        if not isinstance(code, str) or not _CODE_SHAPE.fullmatch(code):
            code = INTERNAL
        return cls(code, untrusted_text(message, MAX_REMOTE_MESSAGE_CHARS))


class LocalError(Exception):
    """A failure on this side of the wire (bad config, unreadable key, refused certificate).

    Carries a message meant for a person; entry points print it instead of a traceback.
    """
