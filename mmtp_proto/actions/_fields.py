"""Reading fields of requests (server side, strict) and of answers (client side, lenient).

A request field that is missing or ill-typed is the sender's error: `MMTPError` with the
code and words the SPEC gives. An answer field that is missing or ill-typed means the server
is not speaking MMTP: `LocalError`, as for any other garbled answer. Unknown keys in answers
are ignored (SPEC §1: servers can grow).
"""

from __future__ import annotations

from typing import Any

from ..address import normalize_address
from ..errors import BAD_REQUEST, LocalError, MMTPError


def email_of(data: dict[str, Any], key: str = "email") -> str:
    """`data[key]` as a normalized address; BAD_REQUEST when absent, INVALID_ADDRESS when bad."""
    if key not in data:
        raise MMTPError(BAD_REQUEST, f"data.{key} is missing")
    return normalize_address(data[key], key)


def answer_of(action: str) -> str:
    """How answer errors name what was malformed: "the server's CHECK answer"."""
    return f"the server's {action} answer"


def _malformed(what: str, key: str, wanted: str) -> LocalError:
    return LocalError(f"{what} is not MMTP: {key!r} must be {wanted}")


def answer_str(response: dict[str, Any], key: str, what: str) -> str:
    value = response.get(key)
    if not isinstance(value, str):
        raise _malformed(what, key, "a string")
    return value


def answer_int(response: dict[str, Any], key: str, what: str) -> int:
    value = response.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _malformed(what, key, "an integer")
    return value


def answer_bool(response: dict[str, Any], key: str, what: str, default: bool | None = None) -> bool:
    """A boolean field; when `default` is given, the field may be absent."""
    value = response.get(key, default)
    if not isinstance(value, bool):
        raise _malformed(what, key, "true or false")
    return value


def answer_list(response: dict[str, Any], key: str, what: str) -> list[Any]:
    value = response.get(key)
    if not isinstance(value, list):
        raise _malformed(what, key, "a list")
    return value


def answer_objects(response: dict[str, Any], key: str, what: str) -> list[dict[str, Any]]:
    value = answer_list(response, key, what)
    if not all(isinstance(item, dict) for item in value):
        raise _malformed(what, key, "a list of objects")
    return value


def answer_object(response: dict[str, Any], key: str, what: str) -> dict[str, Any]:
    value = response.get(key)
    if not isinstance(value, dict):
        raise _malformed(what, key, "an object")
    return value


def answer_strings(response: dict[str, Any], key: str, what: str) -> list[str]:
    value = answer_list(response, key, what)
    if not all(isinstance(item, str) for item in value):
        raise _malformed(what, key, "a list of strings")
    return value


def answer_text(response: dict[str, Any]) -> str:
    """The human `message` of an answer; optional, since the SPEC does not promise one."""
    value = response.get("message")
    return value if isinstance(value, str) else ""


def ok(fields: dict[str, Any]) -> dict[str, Any]:
    """An OK answer: `status` first, then the fields in the order given."""
    return {"status": "OK", **fields}
