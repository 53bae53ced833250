"""SPEC §3 rev 2 on a live server: the signature covers what the sender wrote, so a signed
packet cannot be retyped, re-threaded or re-injected later (issue 11 attack 7, pure part)."""

from __future__ import annotations

import time

import pytest
from helpers import (
    ALICE,
    BOB,
    Wire,
    error_code,
    hex_id,
    key_for,
    make_packet,
    registered,
    stamp_for,
)

from mmtp_proto.message import VERIFIED, open_packet

pytestmark = pytest.mark.secure


@pytest.fixture
def bob_server(server):
    registered(server, BOB, ALICE)
    return server


def _restamp(packet):
    packet["meta"]["hashcashToken"] = stamp_for(packet)
    return packet


@pytest.mark.parametrize(
    "change",
    [
        lambda meta: meta.update(type="FORWARD"),
        lambda meta: meta.update(inReplyTo=hex_id(7)),
        lambda meta: meta.update(references=[hex_id(8)]),
        lambda meta: meta.update(notify=["success"]),
        lambda meta: meta.pop("encrypted"),
    ],
    ids=["retyped", "rethreaded", "references", "notify", "encrypted-dropped"],
)
def test_a_signed_packet_with_a_changed_meta_field_is_signature_invalid(bob_server, change):
    packet = make_packet(ALICE, BOB, sign=True)
    change(packet["meta"])
    with Wire(bob_server) as wire:
        assert error_code(wire.send(_restamp(packet))) == "SIGNATURE_INVALID"


def test_the_stored_packet_still_verifies_for_the_reader(bob_server):
    packet = make_packet(ALICE, BOB, sign=True)
    with Wire(bob_server) as wire:
        answer = wire.send(packet)
        assert answer["status"] == "OK", answer
        assert answer["signatureVerified"] is True
        assert wire.auth(BOB)["status"] == "OK"
        (stored,) = wire.receive(BOB)["messages"]
    opened = open_packet(stored, sender_key=key_for(ALICE).public)
    assert opened.signature == VERIFIED
    assert "receivedAt" in stored["meta"]  # server-set fields do not disturb the input


def test_an_old_signed_packet_cannot_be_reinjected_with_a_fresh_stamp(bob_server):
    old = int(time.time()) - 172_800 - 3600 - 60  # past the stamp validity plus an hour
    packet = make_packet(ALICE, BOB, sign=True, timestamp=old)
    with Wire(bob_server) as wire:
        answer = wire.send(_restamp(packet))
    assert error_code(answer) == "BAD_REQUEST"
    assert "meta.timestamp" in answer["message"]
