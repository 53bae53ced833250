"""HashCash stamps (SPEC §4): parsing, verification and minting. Pure logic, no sockets.

A stamp is ``{"token": "1:<bits>:<YYMMDDhhmmss>:<resource>:<ext>:<rand>:<counter>",
"counter": <int>}``; it is valid when SHA-256 of the ASCII token has at least ``bits``
leading zero bits. ``resource`` is the lowercased recipient address and ``ext`` is
``h=<messageHash>``, so a stamp pays for one message to one recipient.

Replay protection is the store's job: it remembers :attr:`Stamp.spent_key` until
:meth:`Stamp.expires_at`. The token is canonical (plain decimals, fixed date format, the
``counter`` field must repeat the token's counter), so one stamp has exactly one key.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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
_RAND = re.compile(r"[A-Za-z0-9+/=]+")
_MESSAGE_HASH = re.compile(r"[0-9a-f]{64}")

_MIN_YEAR, _MAX_YEAR = 2000, 2099  # what a two-digit year can name

# --- minting internals -------------------------------------------------------------------
# Counters are searched in blocks of _BLOCK: the prefix plus the counter's leading digits is
# hashed once per block, then each candidate only adds its last four digits (precomputed).
_BLOCK_DIGITS = 4
_BLOCK = 10**_BLOCK_DIGITS
_SMALL = tuple(b"%d" % i for i in range(_BLOCK))  # counters 0..9999, no leading zeros
_PADDED = tuple(b"%0*d" % (_BLOCK_DIGITS, i) for i in range(_BLOCK))  # tails 0000..9999
_CHUNK = 4096  # candidates between checkpoints when step != 1
_RAND_CHARS = 16  # 96 random bits by default
_COUNTER_ROOM = 20  # token characters left free for the counter when minting


class MintCancelled(Exception):
    """Raised when a mint's ``cancel()`` returned true (here or in :mod:`mmtp_proto.minter`)."""


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
    if len(rand) < MIN_RAND_CHARS or not _RAND.fullmatch(rand):
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


# --- minting ------------------------------------------------------------------------------


def _check_bits(bits: int) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 0 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be an integer from 0 to {MAX_BITS}, not {bits!r}")


def _target(bits: int) -> bytes:
    """A digest has ``bits`` leading zero bits iff ``digest < _target(bits)``.

    Equal-length bytes compare like big-endian integers, so one C-level comparison replaces
    a bit loop. For 0 bits any digest qualifies: 33 bytes of 0xff sort after every digest.
    """
    return (1 << (256 - bits)).to_bytes(32, "big") if bits else b"\xff" * 33


def _random_rand(chars: int) -> str:
    return base64.b64encode(secrets.token_bytes(chars)).decode("ascii")[:chars]


def _prepare(
    resource: str, bits: int, message_hash: str, now: int | None, rand: str | None
) -> bytes:
    """Validate the inputs and return the token prefix up to and including the last ':'."""
    _check_bits(bits)
    if not isinstance(resource, str) or not resource or not resource.isascii():
        raise ValueError("resource must be the recipient address, a non-empty ASCII string")
    resource = resource.lower()
    if ":" in resource:
        raise ValueError(f"resource {resource!r} must not contain ':'")
    if not isinstance(message_hash, str) or not _MESSAGE_HASH.fullmatch(message_hash.lower()):
        raise ValueError("message_hash must be 64 hex characters (the SHA-256 of the content)")
    date = format_date(int(time.time()) if now is None else now)
    head = f"{VERSION}:{bits}:{date}:{resource}:h={message_hash.lower()}:"
    if rand is None:
        # Pad rand so the prefix ends on a 64-byte SHA-256 block boundary: each candidate
        # then costs one compression (counter + padding fit one block) instead of two.
        chars = _RAND_CHARS + (-(len(head) + _RAND_CHARS + 1)) % 64
        if len(head) + chars + 1 + _COUNTER_ROOM > MAX_TOKEN_CHARS:
            chars = _RAND_CHARS
        rand = _random_rand(chars)
    elif not isinstance(rand, str) or len(rand) < MIN_RAND_CHARS or not _RAND.fullmatch(rand):
        raise ValueError(f"rand must be at least {MIN_RAND_CHARS} base64 characters")
    prefix = f"{head}{rand}:"
    if len(prefix) + _COUNTER_ROOM > MAX_TOKEN_CHARS:
        raise ValueError(f"the resource is too long for a {MAX_TOKEN_CHARS}-character token")
    return prefix.encode("ascii")


_Chunk = tuple[Callable[[], Any], Sequence[bytes], int, int]


def _scan(copy: Callable[[], Any], tails: Sequence[bytes], target: bytes) -> int:
    """Index of the first tail whose hash beats ``target``, or -1. The hot loop."""
    for tail in tails:
        h = copy()
        h.update(tail)
        if h.digest() < target:
            return tails.index(tail)
    return -1


def _chunks(prefix: bytes, start: int, step: int) -> Iterator[_Chunk]:
    """Yield ``(copy, tails, counter_of_first, counter_step)`` covering start, start+step, ..."""
    base = hashlib.sha256(prefix)
    if step != 1:
        counter = start
        while True:
            end = counter + step * _CHUNK
            yield base.copy, [b"%d" % c for c in range(counter, end, step)], counter, step
            counter = end
    counter = start
    if counter < _BLOCK:  # counters with fewer than five digits: no leading-zero tails
        yield base.copy, _SMALL[counter:], counter, 1
        counter = _BLOCK
    elif counter % _BLOCK:  # finish the partial block one full counter at a time
        end = counter - counter % _BLOCK + _BLOCK
        yield base.copy, [b"%d" % c for c in range(counter, end)], counter, 1
        counter = end
    outer = counter // _BLOCK
    while True:  # then whole blocks: hash prefix+leading digits once, add 4-digit tails
        yield hashlib.sha256(prefix + b"%d" % outer).copy, _PADDED, outer * _BLOCK, 1
        outer += 1


def mint(
    resource: str,
    bits: int,
    message_hash: str,
    *,
    now: int | None = None,
    rand: str | None = None,
    start: int = 0,
    step: int = 1,
    progress: Callable[[int], None] | None = None,
    progress_interval: float = 0.1,
    cancel: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Find a stamp for ``resource`` (lowercased here) and content hash ``message_hash``.

    Tries counters ``start, start + step, ...`` (so workers can split the space) and returns
    ``{"token": ..., "counter": ...}`` for the first that works. About
    ``expected_tries(bits)`` hashes on average. ``progress(tries_so_far)`` and ``cancel()``
    are called between blocks of a few thousand tries, at most every ``progress_interval``
    seconds; ``progress`` once more with the final count. A true ``cancel()`` raises
    :class:`MintCancelled`. Raises ``ValueError`` for unusable arguments.
    """
    prefix = _prepare(resource, bits, message_hash, now, rand)
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ValueError("start must be a non-negative integer")
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValueError("step must be a positive integer")
    target = _target(bits)
    tries = 0
    last = time.monotonic()
    for copy, tails, first, stride in _chunks(prefix, start, step):
        index = _scan(copy, tails, target)
        if index >= 0:
            tries += index + 1
            if progress is not None:
                progress(tries)
            counter = first + index * stride
            return {"token": prefix.decode("ascii") + str(counter), "counter": counter}
        tries += len(tails)
        moment = time.monotonic()
        if moment - last >= progress_interval:
            last = moment
            if progress is not None:
                progress(tries)
            if cancel is not None and cancel():
                raise MintCancelled(f"minting cancelled after {tries} tries")
    raise AssertionError("unreachable: _chunks never ends")  # pragma: no cover
