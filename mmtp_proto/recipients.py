"""The `to` and `cc` lists of clear content (SPEC §9): who every recipient sees the message was
for. Bcc recipients appear in neither."""

from __future__ import annotations

from typing import Any

from .address import normalize_address
from .errors import BAD_REQUEST, MMTPError

MAX_LISTED_RECIPIENTS = 100


def validate_listed(content: dict[str, Any], field: str) -> None:
    """`to`/`cc`, when present: lists of at most 100 valid addresses."""
    for key in ("to", "cc"):
        if key not in content:
            continue
        listed = content[key]
        if not isinstance(listed, list) or len(listed) > MAX_LISTED_RECIPIENTS:
            raise MMTPError(
                BAD_REQUEST, f"{field}.{key} must be a list of at most {MAX_LISTED_RECIPIENTS}"
            )
        for address in listed:
            if not isinstance(address, str):
                raise MMTPError(BAD_REQUEST, f"{field}.{key} must list addresses (strings)")
            normalize_address(address, f"{field}.{key}")
