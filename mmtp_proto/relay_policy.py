"""What the outbound queue does with a remote's answer, and when it tries again (SPEC §8.5).

Pure functions: no clock, no randomness and no I/O of their own (both are passed in), so the
queue's decisions can be tested exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from enum import Enum
from typing import Any, Literal

from . import errors
from .dsn import clean_diagnostic
from .errors import NO_ROUTE, REMOTE_REFUSED, REMOTE_UNAVAILABLE, MMTPError
from .hashcash import DEFAULT_VALIDITY_SECONDS, parse_stamp

DEFAULT_RETRY_BASE = 60.0
RETRY_CAP = 3600.0
# Each delay is drawn from [(1 - JITTER) * d, d]: spread enough that jobs queued together do not
# retry together, never beyond the cap and never sooner than most of the nominal delay.
JITTER = 0.2
# The last retry happens this long before the stamp expires: the remote's clock may run ahead.
FINAL_MARGIN = 300.0
# A remote's words passed on to a client are untrusted: cleaned and kept short.
LOOKUP_MESSAGE_CHARS = 200

Stage = Literal["send", "domain_auth"]


class Verdict(Enum):
    DELIVERED = "delivered"  # OK or duplicate: the job is done
    PERMANENT = "permanent"  # bounce now
    TEMPORARY = "temporary"  # try again later (or the next target now)


# The codes SPEC §8.5 names as permanent answers to a relayed SEND.
PERMANENT_CODES = frozenset(
    {
        errors.BAD_REQUEST,
        errors.HASH_MISMATCH,
        errors.POW_REQUIRED,
        errors.POW_INVALID,
        errors.POW_INSUFFICIENT,
        errors.POW_EXPIRED,
        errors.POW_MISMATCH,
        errors.POW_REPLAYED,
        errors.SIGNATURE_INVALID,
        errors.UNKNOWN_RECIPIENT,
        errors.FORBIDDEN,
        errors.NOT_LOCAL,
        errors.INVALID_ADDRESS,
        errors.FRAME_TOO_LARGE,
        errors.KEY_INVALID,
        NO_ROUTE,
    }
)
# Answering DOMAIN_AUTH, these mean "this server takes no relayed mail" (SPEC §8.5). Every other
# answer to DOMAIN_AUTH (AUTH_FAILED above all: our key may not have reached its cache yet) is
# temporary: a relay must not bounce a whole domain's mail on one ambiguous answer.
DOMAIN_AUTH_PERMANENT = frozenset({errors.UNKNOWN_ACTION, errors.TLS_REQUIRED})
# Within one attempt, these send the relay on to the domain's next target (SPEC §8.5).
NEXT_TARGET_CODES = frozenset({errors.TOO_MANY_CONNECTIONS})


def classify(code: str | None, stage: Stage = "send") -> Verdict:
    """`code` is the remote's error code, or None for an OK answer; `stage` says which request
    it answered. Connection and TLS failures and timeouts are classified by the caller as
    `classify(REMOTE_UNAVAILABLE)` (temporary)."""
    if code is None:
        return Verdict.DELIVERED
    if stage == "domain_auth":
        return Verdict.PERMANENT if code in DOMAIN_AUTH_PERMANENT else Verdict.TEMPORARY
    return Verdict.PERMANENT if code in PERMANENT_CODES else Verdict.TEMPORARY


def classify_answer(answer: dict[str, Any], stage: Stage = "send") -> tuple[Verdict, str | None]:
    """A remote's answer frame → (verdict, code). A frame that is neither a well-formed OK nor
    an ERROR counts as a temporary INTERNAL failure (a broken remote may be fixed)."""
    status = answer.get("status")
    if status == "OK":
        return Verdict.DELIVERED, None
    if status == "ERROR":
        code = MMTPError.from_response(answer).code
        return classify(code, stage), code
    return Verdict.TEMPORARY, errors.INTERNAL


def try_next_target(code: str | None, stage: Stage = "send") -> bool:
    """Within one attempt: go on to the domain's next target after this failure? True after a
    connection/TLS failure (REMOTE_UNAVAILABLE), any DOMAIN_AUTH failure that is not
    permanent, and TOO_MANY_CONNECTIONS; False otherwise (the target answered for the job)."""
    if code is None:
        return False
    if stage == "domain_auth":
        return code not in DOMAIN_AUTH_PERMANENT
    return code == REMOTE_UNAVAILABLE or code in NEXT_TARGET_CODES


def closes_connection(code: str | None) -> bool:
    """FRAME_TOO_LARGE ends the connection: the jobs pipelined behind it are re-sent on a new
    one, not failed (SPEC §8.5)."""
    return code == errors.FRAME_TOO_LARGE


def lookup_error(code: str, message: str, remote: str) -> MMTPError:
    """The error a client gets when a POLICY or REQUEST_PUBLIC_KEY made on its behalf at
    `remote` failed with `code` (SPEC §6): KEY_NOT_FOUND and NO_ROUTE pass through, a
    permanent failure becomes REMOTE_REFUSED naming the remote code, anything else
    REMOTE_UNAVAILABLE. The remote's words are untrusted: cleaned and shortened."""
    said = clean_diagnostic(message, LOOKUP_MESSAGE_CHARS)
    if code in (errors.KEY_NOT_FOUND, NO_ROUTE):
        return MMTPError(code, said or f"{remote} answered {code}")
    because = f": {said}" if said else ""
    if code in PERMANENT_CODES or code in DOMAIN_AUTH_PERMANENT:
        return MMTPError(REMOTE_REFUSED, f"{remote} refused the lookup with {code}{because}")
    return MMTPError(
        REMOTE_UNAVAILABLE, f"{remote} could not answer now ({code}{because}); try again later"
    )


def retry_delay(
    attempts: int,
    *,
    base: float = DEFAULT_RETRY_BASE,
    cap: float = RETRY_CAP,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after the `attempts`-th failed attempt (1 = the first failure): base,
    doubling, never over `cap`, less up to JITTER of it at random (`rand()` in [0, 1))."""
    if attempts < 1:
        raise ValueError("attempts counts failed attempts, starting at 1")
    # min() before the power would still overflow for a huge count; cap the exponent instead.
    nominal = min(cap, base * 2.0 ** min(attempts - 1, 64))
    return nominal * (1.0 - JITTER * rand())


def stamp_expires_at(packet: dict[str, Any], validity_seconds: int | None = None) -> int:
    """When the queued packet's stamp stops being valid: its date plus the remote's
    `stampValiditySeconds` when known, else the default. A packet is only queued after its stamp
    was checked, so a malformed stamp here is a bug and raises."""
    stamp = parse_stamp(packet["meta"]["hashcashToken"])
    return stamp.expires_at(validity_seconds or DEFAULT_VALIDITY_SECONDS)


def is_expired(now: float, expires_at: float) -> bool:
    return now >= expires_at


def next_attempt_at(
    now: float,
    attempts: int,
    expires_at: float,
    *,
    base: float = DEFAULT_RETRY_BASE,
    cap: float = RETRY_CAP,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """When to try again after the `attempts`-th failure, or None: bounce now (POW_EXPIRED).

    A retry that would fall after the stamp's last usable moment (`expires_at` less
    FINAL_MARGIN, for the remote's clock) is pulled in to that moment, so the job gets one last
    try instead of bouncing up to an hour early; once that moment has passed, it bounces.
    """
    last_chance = expires_at - FINAL_MARGIN
    if now >= last_chance:
        return None
    return min(now + retry_delay(attempts, base=base, cap=cap, rand=rand), last_chance)
