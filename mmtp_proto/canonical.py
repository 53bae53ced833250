"""Canonical JSON and the bytes that are hashed or signed (SPEC §3, §5).

What a message signature covers is `mmtp_proto.packet.signature_input_of`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    """The one canonical encoding: sorted keys, no spaces, UTF-8, no ASCII escaping.

    Floats are refused: their text form is not stable across implementations.
    """
    _refuse_floats(value)
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _refuse_floats(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            raise ValueError("floats are not allowed in hashed or signed values")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


def message_hash(content: dict[str, Any]) -> str:
    """`verification.messageHash`: SHA-256 of the canonical JSON of `content` as sent."""
    return hashlib.sha256(canonical_json(content)).hexdigest()


def auth_challenge(server_name: str, nonce: str, email: str) -> bytes:
    """The bytes an AUTH signature covers; `email` must already be lowercased."""
    return f"MMTP-AUTH\n{server_name}\n{nonce}\n{email}".encode()
