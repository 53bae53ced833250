"""`(name)%(domain)` addresses (SPEC §2)."""

from __future__ import annotations

import re
from typing import NamedTuple

from .errors import INVALID_ADDRESS, MMTPError

_NAME = re.compile(r"[a-z0-9_+\-]+(?:\.[a-z0-9_+\-]+)*")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?")
_SHAPE = re.compile(r"\((?P<name>[^()%]*)\)%\((?P<domain>[^()%]*)\)")
MAX_ADDRESS_CHARS = 64 + 253 + 5


class Address(NamedTuple):
    name: str
    domain: str

    def __str__(self) -> str:
        return f"({self.name})%({self.domain})"


def is_valid_domain(domain: str) -> bool:
    if domain == "localhost":
        return True
    if not domain.isascii() or len(domain) > 253 or "." not in domain:
        return False
    return all(_LABEL.fullmatch(label) for label in domain.split("."))


def parse_address(value: object, field: str = "address") -> Address:
    """Validate and lowercase an address; raise INVALID_ADDRESS naming `field` otherwise."""
    if not isinstance(value, str):
        raise MMTPError(INVALID_ADDRESS, f"{field} must be a string like (name)%(domain)")
    if len(value) > MAX_ADDRESS_CHARS:
        raise MMTPError(INVALID_ADDRESS, f"{field} is too long to be an address")
    lowered = value.lower() if value.isascii() else value
    match = _SHAPE.fullmatch(lowered)
    if match is None:
        raise MMTPError(INVALID_ADDRESS, f"{field} {value!r} is not of the form (name)%(domain)")
    name, domain = match["name"], match["domain"]
    if not (1 <= len(name) <= 64 and name.isascii() and _NAME.fullmatch(name)):
        raise MMTPError(
            INVALID_ADDRESS,
            f"{field} {value!r}: the name must be 1-64 of a-z 0-9 . _ + -, "
            "not starting or ending with a dot and without '..'",
        )
    if not is_valid_domain(domain):
        raise MMTPError(
            INVALID_ADDRESS,
            f"{field} {value!r}: the domain must be a DNS name with a dot, or localhost",
        )
    return Address(name, domain)


def normalize_address(value: object, field: str = "address") -> str:
    """The lowercased string form used everywhere on the wire and in storage."""
    return str(parse_address(value, field))


def domain_of(normalized: str) -> str:
    """The domain of an address that `normalize_address` already produced (no re-validation)."""
    return normalized[normalized.index(")%(") + 3 : -1]
