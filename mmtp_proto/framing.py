"""Frames on the wire (SPEC §1): one JSON object per LF-terminated UTF-8 line.

Bytes in, values out; no sockets. `FrameDecoder` never holds more than `max_frame_bytes`
of an unfinished line, so a client that never sends LF cannot make the server buffer more.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import BAD_JSON, BAD_REQUEST, FRAME_TOO_LARGE, MMTPError
from .jsondepth import MAX_DEPTH, is_json_syntax, too_deep

DEFAULT_MAX_FRAME_BYTES = 1 << 20
_NO_ID = object()


class FrameTooLarge(MMTPError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            FRAME_TOO_LARGE,
            f"frame exceeds the limit of {limit} bytes; send smaller messages "
            "(large attachments do not fit) — the connection will now close",
        )


class FrameDecoder:
    """Splits a byte stream into frame lines, enforcing the size limit before buffering."""

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._scan_from = 0
        self.broken = False

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Return the complete, non-blank lines in `data` (without the LF).

        Once a line exceeds the limit, the lines before it are still returned, `broken`
        becomes true and nothing more is accepted: the rest of that line cannot be trusted.
        """
        if self.broken:
            return []
        self._buffer += data
        lines: list[bytes] = []
        start = 0
        buf = self._buffer
        while True:
            end = buf.find(b"\n", max(start, self._scan_from))
            if end < 0:
                break
            if end - start > self.max_frame_bytes:
                return self._fail(lines)
            line = bytes(buf[start:end])
            start = end + 1
            self._scan_from = start
            if line.strip(b" \t\r"):
                lines.append(line)
        if start:
            del buf[:start]
        self._scan_from = len(buf)
        if len(buf) > self.max_frame_bytes:
            return self._fail(lines)
        return lines

    def _fail(self, lines: list[bytes]) -> list[bytes]:
        self.broken = True
        self._buffer.clear()
        return lines

    def error(self) -> FrameTooLarge:
        return FrameTooLarge(self.max_frame_bytes)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        # 1e400 parses to infinity, which no JSON encoder can write back.
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return result


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def parse_json(line: bytes) -> Any:
    """Strict JSON: valid UTF-8, no NaN/Infinity, no duplicate keys, no lone surrogates, and
    nesting of at most `MAX_DEPTH` levels (SPEC §1), checked before the parser recurses.

    Server and clients (frames and decrypted content alike) read JSON only through here.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise MMTPError(BAD_JSON, "the frame is not valid UTF-8; send UTF-8 JSON") from None
    if too_deep(text):
        if not is_json_syntax(text):
            raise MMTPError(BAD_JSON, "the frame is not valid JSON")
        raise MMTPError(
            BAD_REQUEST,
            f"the JSON nests deeper than {MAX_DEPTH} levels (objects and arrays count alike); "
            "no MMTP request or message needs that",
        )
    try:
        value = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_no_duplicate_keys,
        )
    except ValueError as exc:
        # JSONDecodeError, NaN/Infinity, duplicate keys and over-long integers all land here.
        raise MMTPError(BAD_JSON, f"the frame is not valid JSON: {exc}") from None
    if "\\u" in text and _has_lone_surrogate(value):
        raise MMTPError(BAD_JSON, "the frame contains a lone UTF-16 surrogate escape")
    return value


@dataclass(frozen=True)
class Request:
    action: str
    data: dict[str, Any]
    id: Any = _NO_ID

    @property
    def has_id(self) -> bool:
        return self.id is not _NO_ID


def peek_id(value: Any) -> Any:
    """The request id to echo, even for a request that is otherwise malformed."""
    if isinstance(value, dict) and "id" in value:
        return value["id"]
    return _NO_ID


def parse_request(value: Any) -> Request:
    """Check the envelope of a parsed frame; `data` absent means an empty object."""
    if not isinstance(value, dict):
        raise MMTPError(BAD_REQUEST, "a request must be a JSON object with an 'action'")
    action = value.get("action")
    if not isinstance(action, str):
        raise MMTPError(BAD_REQUEST, "the request needs a string 'action', such as \"SEND\"")
    data = value.get("data", {})
    if not isinstance(data, dict):
        raise MMTPError(BAD_REQUEST, "'data' must be a JSON object")
    return Request(action=action, data=data, id=value.get("id", _NO_ID))


def with_id(response: dict[str, Any], request_id: Any) -> dict[str, Any]:
    if request_id is not _NO_ID:
        response["id"] = request_id
    return response


def encode_frame(value: dict[str, Any]) -> bytes:
    # ensure_ascii=False keeps frames UTF-8 as the SPEC says; JSON escapes any LF in strings.
    return (
        json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
            "utf-8"
        )
        + b"\n"
    )


NO_ID = _NO_ID
