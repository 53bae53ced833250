"""SPEC §8.5: answer classification, backoff with jitter, stamp expiry in the queue."""

from __future__ import annotations

import pytest

from mmtp_proto import errors
from mmtp_proto.errors import NO_ROUTE, REMOTE_REFUSED, REMOTE_UNAVAILABLE
from mmtp_proto.hashcash import DEFAULT_VALIDITY_SECONDS, mint
from mmtp_proto.packet import build_packet, clear_content
from mmtp_proto.relay_policy import (
    DEFAULT_RETRY_BASE,
    FINAL_MARGIN,
    RETRY_CAP,
    Verdict,
    classify,
    classify_answer,
    closes_connection,
    is_expired,
    lookup_error,
    next_attempt_at,
    retry_delay,
    stamp_expires_at,
    try_next_target,
)

PERMANENT = [
    "BAD_REQUEST",
    "HASH_MISMATCH",
    "POW_REQUIRED",
    "POW_INVALID",
    "POW_INSUFFICIENT",
    "POW_EXPIRED",
    "POW_MISMATCH",
    "POW_REPLAYED",
    "SIGNATURE_INVALID",
    "UNKNOWN_RECIPIENT",
    "FORBIDDEN",
    "NOT_LOCAL",
    "INVALID_ADDRESS",
    "FRAME_TOO_LARGE",
    "KEY_INVALID",
    "NO_ROUTE",
]
TEMPORARY = [
    "RATE_LIMITED",
    "TOO_MANY_CONNECTIONS",
    "MAILBOX_FULL",
    "INTERNAL",
    "AUTH_FAILED",
    "REMOTE_UNAVAILABLE",
    "UNKNOWN_ACTION",  # answering SEND: odd, but not named, so temporary
    "TLS_REQUIRED",
    "AUTH_REQUIRED",
    "KEY_NOT_FOUND",
    "BAD_JSON",
    "SOMETHING_FROM_THE_FUTURE",
]


def error(code: str) -> dict:
    return {"status": "ERROR", "error": {"code": code, "message": "m"}, "message": "m"}


@pytest.mark.parametrize("code", PERMANENT)
def test_permanent_answers_to_send(code: str) -> None:
    assert classify(code) is Verdict.PERMANENT
    assert classify_answer(error(code)) == (Verdict.PERMANENT, code)


@pytest.mark.parametrize("code", TEMPORARY)
def test_everything_else_is_temporary(code: str) -> None:
    assert classify(code) is Verdict.TEMPORARY
    assert classify_answer(error(code)) == (Verdict.TEMPORARY, code)


def test_ok_and_duplicate_deliver() -> None:
    assert classify(None) is Verdict.DELIVERED
    assert classify_answer({"status": "OK", "duplicate": True})[0] is Verdict.DELIVERED
    assert classify_answer({"status": "OK", "duplicate": False})[0] is Verdict.DELIVERED


@pytest.mark.parametrize("answer", [{}, {"status": "MAYBE"}, {"status": None}])
def test_garbled_answers_are_temporary(answer: dict) -> None:
    assert classify_answer(answer) == (Verdict.TEMPORARY, errors.INTERNAL)


def test_error_without_code_is_temporary() -> None:
    assert classify_answer({"status": "ERROR"}) == (Verdict.TEMPORARY, errors.INTERNAL)


@pytest.mark.parametrize("code", ["UNKNOWN_ACTION", "TLS_REQUIRED"])
def test_domain_auth_refusal_means_no_relayed_mail(code: str) -> None:
    assert classify(code, "domain_auth") is Verdict.PERMANENT
    assert classify_answer(error(code), "domain_auth") == (Verdict.PERMANENT, code)
    assert not try_next_target(code, "domain_auth")


@pytest.mark.parametrize("code", ["AUTH_FAILED", "BAD_REQUEST", "RATE_LIMITED", "INTERNAL", "X"])
def test_other_domain_auth_failures_are_temporary(code: str) -> None:
    assert classify(code, "domain_auth") is Verdict.TEMPORARY
    assert try_next_target(code, "domain_auth")


def test_next_target_within_an_attempt() -> None:
    assert try_next_target(REMOTE_UNAVAILABLE)
    assert try_next_target("TOO_MANY_CONNECTIONS")
    for code in ("RATE_LIMITED", "MAILBOX_FULL", "UNKNOWN_RECIPIENT", "INTERNAL", None):
        assert not try_next_target(code)


def test_frame_too_large_closes_the_connection() -> None:
    assert closes_connection("FRAME_TOO_LARGE")
    assert not closes_connection("POW_INVALID") and not closes_connection(None)


def test_lookup_errors() -> None:
    assert lookup_error("KEY_NOT_FOUND", "no key", "b:1").code == "KEY_NOT_FOUND"
    assert lookup_error(NO_ROUTE, "none", "b:1").code == NO_ROUTE
    refused = lookup_error("INVALID_ADDRESS", "bad", "mx.b.test:8026")
    assert refused.code == REMOTE_REFUSED and "INVALID_ADDRESS" in refused.message
    assert lookup_error("UNKNOWN_ACTION", "?", "b:1").code == REMOTE_REFUSED
    assert lookup_error("RATE_LIMITED", "slow down", "b:1").code == REMOTE_UNAVAILABLE
    assert lookup_error("WHATEVER", "?", "b:1").code == REMOTE_UNAVAILABLE


# --- backoff -----------------------------------------------------------------------------


def test_backoff_doubles_from_the_base_up_to_the_cap() -> None:
    no_jitter = [retry_delay(n, rand=lambda: 0.0) for n in range(1, 10)]
    assert no_jitter == [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]
    assert retry_delay(10**6, rand=lambda: 0.0) == RETRY_CAP
    assert retry_delay(3, base=5, rand=lambda: 0.0) == 20
    assert retry_delay(1) <= DEFAULT_RETRY_BASE


def test_jitter_stays_within_bounds() -> None:
    assert retry_delay(1, rand=lambda: 0.999999) == pytest.approx(48, abs=0.01)
    delays = {retry_delay(20, rand=lambda r=r: r) for r in (0.0, 0.25, 0.5, 0.75, 0.9999)}
    assert len(delays) == 5
    assert all(0.8 * RETRY_CAP - 1 <= d <= RETRY_CAP for d in delays)


def test_retry_delay_refuses_zero_attempts() -> None:
    with pytest.raises(ValueError):
        retry_delay(0)


# --- expiry ------------------------------------------------------------------------------


def stamped_packet(now: int) -> dict:
    packet = build_packet(
        sender="(alice)%(a.test)", recipient="(bob)%(b.test)", content=clear_content("s", "b")
    )
    packet["meta"]["hashcashToken"] = mint(
        packet["recipient"], 4, packet["verification"]["messageHash"], now=now
    )
    return packet


def test_stamp_expiry_uses_remote_validity_when_known() -> None:
    now = 1_790_000_000
    packet = stamped_packet(now)
    assert stamp_expires_at(packet) == now + DEFAULT_VALIDITY_SECONDS
    assert stamp_expires_at(packet, 3600) == now + 3600
    assert not is_expired(now + 3599, now + 3600)
    assert is_expired(now + 3600, now + 3600)


def test_next_attempt_pulls_the_last_try_in_then_bounces() -> None:
    expires = 10_000.0
    assert next_attempt_at(0, 1, expires, rand=lambda: 0.0) == 60
    # A retry due after the last usable moment happens at that moment instead.
    assert next_attempt_at(9_000, 7, expires, rand=lambda: 0.0) == expires - FINAL_MARGIN
    assert next_attempt_at(expires - FINAL_MARGIN, 1, expires) is None
    assert next_attempt_at(expires + 1, 1, expires) is None


def test_lookup_errors_clean_remote_words() -> None:
    hostile = "\x1b[2J" + "spam " * 200
    for code in ("KEY_NOT_FOUND", "INVALID_ADDRESS", "RATE_LIMITED"):
        err = lookup_error(code, hostile, "b:1")
        assert "\x1b" not in err.message and len(err.message) < 300
    assert lookup_error("KEY_NOT_FOUND", "", "b:1").message == "b:1 answered KEY_NOT_FOUND"
