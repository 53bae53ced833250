"""HashCash stamps (SPEC §4): the token format, parsing and verification. Pure logic.

A stamp is ``{"token": "1:<bits>:<YYMMDDhhmmss>:<resource>:<ext>:<rand>:<counter>",
"counter": <int>}``; it is valid when SHA-256 of the ASCII token has at least ``bits``
leading zero bits. ``resource`` is the lowercased recipient address and ``ext`` is
``h=<messageHash>``, so a stamp pays for one message to one recipient.

Replay protection is the store's job: it remembers :attr:`Stamp.spent_key` until
:meth:`Stamp.expires_at`. The token is canonical (plain decimals, fixed date format, the
``counter`` field must repeat the token's counter), so one stamp has exactly one key.
Minting lives in :mod:`mmtp_proto.hashcash`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from .errors import (
    POW_EXPIRED,
    POW_INSUFFICIENT,
    POW_INVALID,
    POW_MISMATCH,
    POW_REQUIRED,
    MMTPError,
)

VERSION = "1"
MAX_TOKEN_CHARS = 512
MAX_BITS = 256
MIN_RAND_CHARS = 12
DEFAULT_VALIDITY_SECONDS = 172_800  # 2 days
DEFAULT_MAX_FUTURE_SECONDS = 3_600  # 1 hour

_PLAIN_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_DATE = re.compile(r"[0-9]{12}")
RAND_RE = re.compile(r"[A-Za-z0-9+/=]+")
MESSAGE_HASH_RE = re.compile(r"[0-9a-f]{64}")

_MIN_YEAR, _MAX_YEAR = 2000, 2099  # what a two-digit year can name


@dataclass(frozen=True)
class Stamp:
    """A well-formed stamp; :func:`verify_stamp` decides whether it is acceptable."""

    token: str
    bits: int
    date: int  # Unix seconds (UTC)
    resource: str
    ext: str
    rand: str
    counter: int

    @property
    def spent_key(self) -> str:
        """Lowercase hex SHA-256 of the token: what the server stores to refuse replays."""
        return hashlib.sha256(self.token.encode("ascii")).hexdigest()

    def expires_at(self, validity_seconds: int = DEFAULT_VALIDITY_SECONDS) -> int:
        """When the stamp stops verifying, so when a spent record may be forgotten."""
        return self.date + validity_seconds


# --- dates and bits ----------------------------------------------------------------------


def format_date(ts: int) -> str:
    """Unix seconds -> ``YYMMDDhhmmss`` in UTC (years 2000-2099 only)."""
    moment = datetime.fromtimestamp(int(ts), UTC)
    if not _MIN_YEAR <= moment.year <= _MAX_YEAR:
        raise ValueError(f"a stamp date must fall in {_MIN_YEAR}-{_MAX_YEAR}, not {moment.year}")
    return moment.strftime("%y%m%d%H%M%S")


def _date_problem(s: object) -> str | int:
    """Unix seconds for a valid ``YYMMDDhhmmss``, else a description of what is wrong."""
    if not isinstance(s, str) or not _DATE.fullmatch(s):
        return f"the stamp date {_show(s)} is not 12 digits YYMMDDhhmmss (UTC)"
    yy, mo, dd, hh, mi, ss = (int(s[i : i + 2]) for i in range(0, 12, 2))
    try:
        moment = datetime(_MIN_YEAR + yy, mo, dd, hh, mi, ss, tzinfo=UTC)
    except ValueError:
        return f"the stamp date {s!r} is not a real date and time (UTC)"
    return int(moment.timestamp())


def parse_date(s: str) -> int:
    """``YYMMDDhhmmss`` (UTC, year 20YY) -> Unix seconds; anything else is ``POW_INVALID``."""
    result = _date_problem(s)
    if isinstance(result, str):
        raise MMTPError(POW_INVALID, f"{result}; mint a new stamp")
    return result


def leading_zero_bits(digest: bytes) -> int:
    """How many of the leading bits of ``digest`` (big-endian) are zero."""
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def expected_tries(bits: int) -> int:
    """The mean number of hashes to mint a stamp of ``bits`` (for an ETA display)."""
    return 2**bits


# --- parsing and verification ------------------------------------------------------------


def _show(value: object, limit: int = 40) -> str:
    """A short, escaped rendering of client-supplied text for an error message."""
    if isinstance(value, int) and value.bit_length() > 128:
        return "a very large number"  # repr() of a huge int is slow or even refused
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse(obj: object, advice: str) -> Stamp:
    if obj is None:
        raise MMTPError(
            POW_REQUIRED,
            f"this message needs a HashCash stamp in meta.hashcashToken; {advice}",
        )

    def invalid(what: str) -> MMTPError:
        return MMTPError(POW_INVALID, f"{what}; {advice}")

    if not isinstance(obj, dict):
        raise invalid('meta.hashcashToken must be an object {"token": ..., "counter": ...}')
    token = obj.get("token")
    if not isinstance(token, str):
        raise invalid("meta.hashcashToken.token must be a string")
    if len(token) > MAX_TOKEN_CHARS:
        raise invalid(f"the stamp token is longer than {MAX_TOKEN_CHARS} characters")
    if not token.isascii():
        raise invalid("the stamp token must be ASCII")
    counter_field = obj.get("counter")
    # bool is a subclass of int, but true/false is not a counter
    if not isinstance(counter_field, int) or isinstance(counter_field, bool):
        raise invalid("meta.hashcashToken.counter must be an integer")

    fields = token.split(":")
    if len(fields) != 7:
        raise invalid(
            f"the stamp token has {len(fields)} ':'-separated fields, not 7 "
            "(ver:bits:date:resource:ext:rand:counter)"
        )
    version, bits_text, date_text, resource, ext, rand, counter_text = fields
    if version != VERSION:
        raise invalid(f"the stamp version is {_show(version)}, not {VERSION!r}")
    if not _PLAIN_DECIMAL.fullmatch(bits_text) or int(bits_text) > MAX_BITS:
        raise invalid(
            f"the stamp bits {_show(bits_text)} are not a plain decimal from 0 to {MAX_BITS}"
        )
    date = _date_problem(date_text)
    if isinstance(date, str):
        raise invalid(date)
    if len(rand) < MIN_RAND_CHARS or not RAND_RE.fullmatch(rand):
        raise invalid(
            f"the stamp rand must be at least {MIN_RAND_CHARS} base64 characters "
            "(A-Z a-z 0-9 + / =)"
        )
    if not _PLAIN_DECIMAL.fullmatch(counter_text):
        raise invalid(
            f"the stamp counter {_show(counter_text)} is not a plain decimal "
            "(digits only, no sign, no leading zeros)"
        )
    counter = int(counter_text)
    if counter != counter_field:
        raise invalid(
            f"the stamp counter {_show(counter_text)} differs from "
            f"meta.hashcashToken.counter {_show(counter_field)}"
        )
    return Stamp(
        token=token,
        bits=int(bits_text),
        date=date,
        resource=resource,
        ext=ext,
        rand=rand,
        counter=counter,
    )


def parse_stamp(obj: object) -> Stamp:
    """Check the shape of a ``meta.hashcashToken`` value (``None`` = missing).

    Raises ``POW_REQUIRED`` for ``None`` and ``POW_INVALID`` for anything malformed; never
    any other exception, whatever ``obj`` is. Does not check the hash, date or binding.
    """
    return _parse(obj, "mint a new stamp")


def verify_stamp(
    obj: object,
    *,
    difficulty: int,
    resource: str,
    message_hash: str,
    now: int,
    validity_seconds: int = DEFAULT_VALIDITY_SECONDS,
    max_future_seconds: int = DEFAULT_MAX_FUTURE_SECONDS,
) -> Stamp:
    """Everything SPEC §4 asks of a stamp except replay (the store checks ``spent_key``).

    ``resource`` is the lowercased recipient, ``message_hash`` the recomputed content hash.
    Checks run in order: shape (``POW_REQUIRED``/``POW_INVALID``), claimed bits against
    ``difficulty`` (``POW_INSUFFICIENT``), the hash (``POW_INVALID``), the date window
    (``POW_EXPIRED``, both edges inclusive), resource and ``h=`` (``POW_MISMATCH``).
    """
    advice = f"mint a new stamp of at least {difficulty} bits for this recipient and message"
    stamp = _parse(obj, advice)
    if stamp.bits < difficulty:
        raise MMTPError(
            POW_INSUFFICIENT,
            f"the stamp claims {stamp.bits} bits but this server requires {difficulty}; "
            f"mint a new stamp at {difficulty} bits",
        )
    digest = hashlib.sha256(stamp.token.encode("ascii")).digest()
    if leading_zero_bits(digest) < stamp.bits:
        raise MMTPError(
            POW_INVALID,
            f"the stamp's SHA-256 does not have the {stamp.bits} leading zero bits it claims; "
            f"{advice}",
        )
    if stamp.date < now - validity_seconds:
        raise MMTPError(
            POW_EXPIRED,
            f"the stamp is {now - stamp.date} seconds old, older than the "
            f"{validity_seconds} seconds a stamp stays valid; mint a new stamp of at least "
            f"{difficulty} bits",
        )
    if stamp.date > now + max_future_seconds:
        raise MMTPError(
            POW_EXPIRED,
            f"the stamp is dated {stamp.date - now} seconds in the future, more than the "
            f"{max_future_seconds} allowed; check your clock (UTC) and mint a new stamp",
        )
    if stamp.resource != resource:
        raise MMTPError(
            POW_MISMATCH,
            f"the stamp was minted for {_show(stamp.resource, 80)}, not for the recipient "
            f"{resource!r}; mint a new stamp for this recipient",
        )
    if stamp.ext != "h=" + message_hash:
        raise MMTPError(
            POW_MISMATCH,
            "the stamp is bound to other content (its ext must be "
            "'h=<verification.messageHash>'); mint a new stamp for this message",
        )
    return stamp


class RecentStamps:
    """Stamps this process stored messages with lately (bounded): a hint, not the record
    (the store is). A signed SEND carrying one is looked up before its signature costs a
    worker's CPU, so a replayed or retried one is answered without that work."""

    def __init__(self, limit: int = 50_000) -> None:
        self._limit = limit
        self._keys: set[str] = set()

    def add(self, spent_key: str) -> None:
        if len(self._keys) >= self._limit:
            # The oldest ones matter least; forgetting them all costs at most one
            # verification per replay, then the write refuses it anyway.
            self._keys.clear()
        self._keys.add(spent_key)

    def seen(self, spent_key: str) -> bool:
        return spent_key in self._keys
