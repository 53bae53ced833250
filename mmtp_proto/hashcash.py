"""HashCash minting (SPEC §4): find the counter that gives a token the claimed zero bits.

The format, parsing and verification of stamps are in :mod:`mmtp_proto.stamp`; they are
re-exported here so callers have one name for stamps. Pure logic, no sockets or processes
(:mod:`mmtp_proto.minter` decides where a mint runs).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .stamp import (
    DEFAULT_MAX_FUTURE_SECONDS,
    DEFAULT_VALIDITY_SECONDS,
    MAX_BITS,
    MAX_TOKEN_CHARS,
    MESSAGE_HASH_RE,
    MIN_RAND_CHARS,
    RAND_RE,
    VERSION,
    Stamp,
    expected_tries,
    format_date,
    leading_zero_bits,
    parse_date,
    parse_stamp,
    verify_stamp,
)

__all__ = [
    "DEFAULT_MAX_FUTURE_SECONDS",
    "DEFAULT_VALIDITY_SECONDS",
    "MAX_BITS",
    "MAX_TOKEN_CHARS",
    "MIN_RAND_CHARS",
    "VERSION",
    "MintCancelled",
    "Stamp",
    "expected_tries",
    "format_date",
    "leading_zero_bits",
    "mint",
    "parse_date",
    "parse_stamp",
    "verify_stamp",
]

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
    if not isinstance(message_hash, str) or not MESSAGE_HASH_RE.fullmatch(message_hash.lower()):
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
    elif not isinstance(rand, str) or len(rand) < MIN_RAND_CHARS or not RAND_RE.fullmatch(rand):
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
