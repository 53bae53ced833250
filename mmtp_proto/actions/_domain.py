"""The `domain` field that POLICY, DOMAIN_KEY and DOMAIN_AUTH share."""

from __future__ import annotations

from typing import Any

from ..address import is_valid_domain
from ..errors import BAD_REQUEST, INVALID_ADDRESS, MMTPError


def domain_of_data(data: dict[str, Any], key: str = "domain") -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise MMTPError(BAD_REQUEST, f"data.{key} must be a domain name (a string)")
    domain = value.lower()
    if not is_valid_domain(domain):
        raise MMTPError(INVALID_ADDRESS, f"data.{key} is not a valid domain name")
    return domain
