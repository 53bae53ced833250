"""SPEC §10 delivery status notifications: the packet, meta.notify, untrusted diagnostics."""

from __future__ import annotations

import pytest

from mmtp_proto.canonical import canonical_json, message_hash
from mmtp_proto.dsn import (
    DEFAULT_DELAY_NOTICE_SECONDS,
    DEFAULT_NOTIFY,
    build_dsn,
    clean_diagnostic,
    delay_notice_due,
    notify_events,
    validate_notify,
    wants_dsn,
)
from mmtp_proto.errors import BAD_REQUEST, MMTPError
from mmtp_proto.packet import build_packet, clear_content, is_message_id

NOW = 1_790_000_000


def original(**meta) -> dict:
    packet = build_packet(
        sender="(Alice)%(A.test)", recipient="(bob)%(b.test)", content=clear_content("hi", "body")
    )
    packet["meta"].update(meta)
    return packet


def test_failed_dsn_packet_shape() -> None:
    orig = original()
    dsn = build_dsn(
        orig,
        action="failed",
        code="UNKNOWN_RECIPIENT",
        diagnostic="no such user",
        attempts=1,
        last_attempt_at=NOW - 5,
        remote="mx.b.test:8026",
        now=NOW,
    )
    meta = dsn["meta"]
    assert meta["type"] == "DSN"
    assert is_message_id(meta["messageId"]) and meta["messageId"] != orig["meta"]["messageId"]
    assert meta["inReplyTo"] == orig["meta"]["messageId"]
    assert meta["timestamp"] == NOW and meta["hashcashToken"] is None
    assert meta["encrypted"] is False and meta["signed"] is False
    assert dsn["sender"] == "(postmaster)%(a.test)"
    assert dsn["recipient"] == "(alice)%(a.test)"
    assert dsn["verification"] == {"messageHash": message_hash(dsn["content"]), "signature": None}
    assert dsn["content"]["dsn"] == {
        "messageId": orig["meta"]["messageId"],
        "recipient": "(bob)%(b.test)",
        "action": "failed",
        "code": "UNKNOWN_RECIPIENT",
        "diagnostic": "no such user",
        "attempts": 1,
        "lastAttemptAt": NOW - 5,
        "remote": "mx.b.test:8026",
    }
    body = dsn["content"]["body"]
    assert "could not be delivered" in body and "typo" in body and "no such user" in body
    assert "(bob)%(b.test)" in dsn["content"]["subject"]
    canonical_json(dsn)  # hashable as is: no floats anywhere


def test_each_dsn_has_a_fresh_id() -> None:
    orig = original()
    ids = {
        build_dsn(
            orig,
            action="failed",
            code="NO_ROUTE",
            diagnostic="",
            attempts=1,
            last_attempt_at=NOW,
            remote=None,
        )["meta"]["messageId"]
        for _ in range(5)
    }
    assert len(ids) == 5


@pytest.mark.parametrize(
    ("action", "code", "words"),
    [
        ("failed", "NO_ROUTE", "No MMTP server could be found"),
        ("failed", "POW_EXPIRED", "stamp ran out"),
        ("failed", "MAILBOX_FULL", "mailbox is full"),
        ("failed", "SOMETHING_NEW", "refused the message for good"),
        ("delayed", "REMOTE_UNAVAILABLE", "keeps trying until"),
        ("delivered", None, "was delivered"),
    ],
)
def test_bodies_say_what_happened_and_what_to_do(action, code, words) -> None:
    dsn = build_dsn(
        original(),
        action=action,
        code=code,
        diagnostic=None,
        attempts=3,
        last_attempt_at=NOW,
        remote=None,
        retry_until=NOW + 86_400,
    )
    assert words in dsn["content"]["body"]
    assert dsn["content"]["dsn"]["action"] == action
    assert dsn["content"]["dsn"]["remote"] is None
    assert dsn["content"]["dsn"]["diagnostic"] == ""


def test_diagnostic_is_cleaned_and_bounded() -> None:
    hostile = "evil\x1b[31m\r\nline\u202egnp.exe\x00" + "x" * 2000
    cleaned = clean_diagnostic(hostile)
    assert len(cleaned) == 500 and cleaned.endswith("…")
    assert not any(ch in cleaned for ch in "\x1b\r\n\u202e\x00")
    assert cleaned.startswith("evil [31m line gnp.exe")
    dsn = build_dsn(
        original(),
        action="failed",
        code="FORBIDDEN",
        diagnostic=hostile,
        attempts=1,
        last_attempt_at=NOW,
        remote="b:1",
    )
    assert dsn["content"]["dsn"]["diagnostic"] == cleaned
    assert "\x1b" not in dsn["content"]["body"]


def test_clean_diagnostic_edge_cases() -> None:
    assert clean_diagnostic("  short  ") == "short"
    assert clean_diagnostic(None) == ""
    assert clean_diagnostic(42) == "42"
    assert clean_diagnostic("é中文 ✓") == "é中文 ✓"
    assert clean_diagnostic("y" * 500) == "y" * 500
    assert len(clean_diagnostic("y" * 501)) == 500


# --- meta.notify -------------------------------------------------------------------------


def test_notify_default_and_none() -> None:
    assert notify_events({}) == DEFAULT_NOTIFY == {"failure", "delay"}
    assert notify_events({"notify": None}) == DEFAULT_NOTIFY
    assert notify_events({"notify": []}) == frozenset()
    assert notify_events({"notify": ["success"]}) == {"success"}


def test_wants_dsn() -> None:
    default = {"type": "SEND"}
    assert wants_dsn(default, "failed") and wants_dsn(default, "delayed")
    assert not wants_dsn(default, "delivered")
    none = {"type": "SEND", "notify": []}
    assert not any(wants_dsn(none, a) for a in ("failed", "delayed", "delivered"))
    success = {"type": "REPLY", "notify": ["success"]}
    assert wants_dsn(success, "delivered") and not wants_dsn(success, "failed")
    assert not wants_dsn({"type": "DSN"}, "failed")


@pytest.mark.parametrize("value", [None, [], ["failure"], ["failure", "delay", "success"]])
def test_validate_notify_accepts(value) -> None:
    validate_notify(value)


@pytest.mark.parametrize(
    "value", ["failure", ["never"], ["failure", "failure"], [1], {"failure": True}, ["FAILURE"]]
)
def test_validate_notify_refuses(value) -> None:
    with pytest.raises(MMTPError) as info:
        validate_notify(value)
    assert info.value.code == BAD_REQUEST and "meta.notify" in info.value.message


def test_delay_notice_once_after_threshold() -> None:
    assert not delay_notice_due(0, DEFAULT_DELAY_NOTICE_SECONDS - 1, already_sent=False)
    assert delay_notice_due(0, DEFAULT_DELAY_NOTICE_SECONDS, already_sent=False)
    assert not delay_notice_due(0, 10 * DEFAULT_DELAY_NOTICE_SECONDS, already_sent=True)
    assert delay_notice_due(100, 160, already_sent=False, threshold=60)
