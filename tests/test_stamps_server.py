"""HashCash stamps as the server keeps them (SPEC §4): spent once, durably, and only when the
message they pay for is stored."""

from __future__ import annotations

import json
import time

import pytest
from helpers import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    MALLORY,
    Wire,
    as_sender,
    error_code,
    hex_id,
    key_for,
    make_packet,
    registered,
    resign,
    stamp_for,
    with_other_id,
)

from mmtp_proto.limits import MAX_RECEIVE_LIMIT

pytestmark = [pytest.mark.secure, pytest.mark.both_backends]


def mailbox_ids(server, email):
    with Wire(server) as wire:
        assert wire.auth(email)["status"] == "OK"
        return [
            m["meta"]["messageId"] for m in wire.receive(email, limit=MAX_RECEIVE_LIMIT)["messages"]
        ]


# ---------------------------------------------------------------------------- replay


def test_replayed_stamp_is_refused_on_another_connection(server):
    registered(server, BOB)
    packet = make_packet(DAVE, BOB)
    with as_sender(Wire(server)) as wire:
        assert wire.send(packet)["status"] == "OK"
    with Wire(server, tls=False) as wire:  # no AUTH over plain TCP: signed instead
        answer = wire.send(resign(with_other_id(packet, hex_id(1)), key_for(DAVE)))
    assert error_code(answer) == "POW_REPLAYED"
    assert mailbox_ids(server, BOB) == [packet["meta"]["messageId"]]


def test_replayed_stamp_in_the_same_write_is_refused(server):
    """Both SENDs land in one loop turn (one group commit): the second still sees the first."""
    registered(server, BOB)
    packet = make_packet(DAVE, BOB)
    twin = with_other_id(packet, hex_id(2))
    frames = [
        {"action": "SEND", "id": 1, "data": {"packet": packet}},
        {"action": "SEND", "id": 2, "data": {"packet": twin}},
    ]
    with as_sender(Wire(server)) as wire:
        wire.send_bytes(b"".join(json.dumps(f).encode() + b"\n" for f in frames))
        first, second = wire.read(), wire.read()
    assert first["status"] == "OK", first
    assert error_code(second) == "POW_REPLAYED"
    assert mailbox_ids(server, BOB) == [packet["meta"]["messageId"]]


def test_replayed_stamp_from_two_connections_at_once_is_spent_once(server):
    registered(server, BOB, DAVE)
    packet = make_packet(DAVE, BOB)
    twins = [resign(with_other_id(packet, hex_id(n)), key_for(DAVE)) for n in range(4)]
    wires = [Wire(server, tls=n % 2 == 0) for n in range(4)]  # signed: no AUTH over plain
    try:
        for wire, twin in zip(wires, twins, strict=True):
            wire.send_frame({"action": "SEND", "data": {"packet": twin}})
        answers = [wire.read() for wire in wires]
    finally:
        for wire in wires:
            wire.close()
    statuses = sorted(a["status"] if a["status"] == "OK" else a["error"]["code"] for a in answers)
    assert statuses == ["OK", "POW_REPLAYED", "POW_REPLAYED", "POW_REPLAYED"]
    assert len(mailbox_ids(server, BOB)) == 1


def test_replayed_stamp_is_refused_after_restart(start_server, tmp_path):
    data_dir = tmp_path / "replay"
    server = start_server(data_dir=data_dir)
    registered(server, BOB)
    packet = make_packet(DAVE, BOB)
    with as_sender(Wire(server)) as wire:
        assert wire.send(packet)["status"] == "OK"
    server.stop()
    server = start_server(data_dir=data_dir)
    with as_sender(Wire(server)) as wire:
        # The very same packet is a retry: still a duplicate, not a replay.
        assert wire.send(packet)["duplicate"] is True
        answer = wire.send(with_other_id(packet, hex_id(3)))
    assert error_code(answer) == "POW_REPLAYED"
    assert mailbox_ids(server, BOB) == [packet["meta"]["messageId"]]


def test_spent_stamp_stays_spent_after_its_message_is_deleted(server):
    registered(server, BOB)
    packet = make_packet(DAVE, BOB)
    with as_sender(Wire(server)) as wire:
        assert wire.send(packet)["status"] == "OK"
        with Wire(server) as owner:
            owner.auth(BOB)
            ids = [packet["meta"]["messageId"]]
            assert owner.ok("DELETE", {"email": BOB, "messageIds": ids})["deleted"] == 1
        # The same packet again meets its tombstone (SPEC §5): "duplicate", nothing stored;
        # a new id may not reuse the stamp.
        again = wire.ok("SEND", {"packet": packet})
        assert again["duplicate"] is True
        assert error_code(wire.send(with_other_id(packet, hex_id(4)))) == "POW_REPLAYED"
    assert mailbox_ids(server, BOB) == []


def test_spent_stamp_stays_spent_after_delete_and_restart(start_server, tmp_path):
    data_dir = tmp_path / "delete-restart"
    server = start_server(data_dir=data_dir)
    registered(server, BOB)
    packet = make_packet(DAVE, BOB)
    with as_sender(Wire(server)) as wire:
        assert wire.send(packet)["status"] == "OK"
    with Wire(server) as wire:
        wire.auth(BOB)
        wire.ok("DELETE", {"email": BOB, "messageIds": [packet["meta"]["messageId"]]})
    server.stop()
    server = start_server(data_dir=data_dir)
    with as_sender(Wire(server)) as wire:
        assert wire.ok("SEND", {"packet": packet})["duplicate"] is True
        assert error_code(wire.send(with_other_id(packet, hex_id(6)))) == "POW_REPLAYED"


def test_a_new_stamp_pays_for_the_same_content_again(server):
    registered(server, BOB)
    packet = make_packet(DAVE, BOB)
    again = with_other_id(packet, hex_id(5))
    again["meta"]["hashcashToken"] = stamp_for(again)
    with as_sender(Wire(server)) as wire:
        assert wire.send(packet)["status"] == "OK"
        assert wire.send(again)["status"] == "OK"
    assert len(mailbox_ids(server, BOB)) == 2


# ---------------------------------------------------------------------------- not spent


def test_stamp_is_not_spent_when_the_recipient_is_unknown(server):
    packet = make_packet(DAVE, BOB)
    with as_sender(Wire(server)) as wire:
        assert error_code(wire.send(packet)) == "UNKNOWN_RECIPIENT"
        assert wire.register(BOB)["status"] == "OK"
        answer = wire.send(packet)
    assert answer["status"] == "OK", answer
    assert answer["duplicate"] is False


def test_stamp_is_not_spent_when_the_signature_is_invalid(server):
    registered(server, ALICE, BOB)
    packet = resign(make_packet(ALICE, BOB), key_for(MALLORY))
    with Wire(server) as wire:
        assert error_code(wire.send(packet)) == "SIGNATURE_INVALID"
        resign(packet, key_for(ALICE))
        assert wire.send(packet)["status"] == "OK"


def test_stamp_is_not_spent_when_the_sender_is_forbidden(server):
    registered(server, ALICE, BOB)
    packet = make_packet(ALICE, BOB)
    with Wire(server) as wire:
        assert error_code(wire.send(packet)) == "FORBIDDEN"
        wire.auth(ALICE)
        assert wire.send(packet)["duplicate"] is False


def test_stamp_is_not_spent_when_the_message_id_is_taken(server):
    registered(server, BOB)
    first = make_packet(DAVE, BOB, body="first")
    clash = make_packet(DAVE, BOB, body="second", message_id=first["meta"]["messageId"])
    with as_sender(Wire(server)) as wire:
        assert wire.send(first)["status"] == "OK"
        assert error_code(wire.send(clash)) == "BAD_REQUEST"
        # Under a fresh id the same content and the same stamp go through.
        answer = wire.send(with_other_id(clash, hex_id(6)))
    assert answer["status"] == "OK", answer


def test_stamp_is_not_spent_when_the_mailbox_is_full(start_server):
    server = start_server(mailbox_max_messages=1)
    registered(server, BOB)
    stored = make_packet(DAVE, BOB, body="fills it")
    waiting = make_packet(DAVE, BOB, body="waits")
    with as_sender(Wire(server)) as wire:
        assert wire.send(stored)["status"] == "OK"
        assert error_code(wire.send(waiting)) == "MAILBOX_FULL"
        with Wire(server) as owner:
            owner.auth(BOB)
            owner.ok("DELETE", {"email": BOB, "messageIds": [stored["meta"]["messageId"]]})
        assert wire.send(waiting)["status"] == "OK"


def test_stamp_is_not_spent_by_a_stamp_error_elsewhere_in_the_packet(server):
    """A message refused for its hash leaves a valid stamp for the real content unspent."""
    registered(server, BOB)
    packet = make_packet(DAVE, BOB)
    tampered = json.loads(json.dumps(packet))
    tampered["content"]["body"] += "!"
    with as_sender(Wire(server)) as wire:
        assert error_code(wire.send(tampered)) == "HASH_MISMATCH"
        assert wire.send(packet)["status"] == "OK"


# ---------------------------------------------------------------------------- binding


def test_stamp_resource_is_the_lowercased_recipient(server):
    registered(server, BOB)
    packet = make_packet(DAVE, BOB)  # minted for "(bob)%(localhost)"
    packet["recipient"] = "(Bob)%(LocalHost)"
    with as_sender(Wire(server)) as wire:
        answer = wire.send(packet)
    assert answer["status"] == "OK", answer


def test_stamp_minted_for_one_recipient_does_not_pay_for_another(server):
    registered(server, BOB, CAROL)
    packet = make_packet(DAVE, BOB)
    redirected = json.loads(json.dumps(packet))
    redirected["recipient"] = CAROL
    with as_sender(Wire(server)) as wire:
        assert error_code(wire.send(redirected)) == "POW_MISMATCH"
        assert wire.send(packet)["status"] == "OK"


def test_stamp_validity_follows_the_server_setting(start_server):
    server = start_server(stamp_validity_seconds=3600)
    registered(server, BOB)
    now = int(time.time())
    fresh = make_packet(DAVE, BOB)
    fresh["meta"]["hashcashToken"] = stamp_for(fresh, now=now - 1800)
    stale = make_packet(DAVE, BOB)
    stale["meta"]["hashcashToken"] = stamp_for(stale, now=now - 3700)
    with as_sender(Wire(server)) as wire:
        assert wire.greeting["stampValiditySeconds"] == 3600
        assert wire.send(fresh)["status"] == "OK"
        assert error_code(wire.send(stale)) == "POW_EXPIRED"


def test_difficulty_follows_the_server_setting(start_server):
    server = start_server(difficulty=8)
    registered(server, BOB)
    weak = make_packet(DAVE, BOB)  # minted at the helpers' 6 bits
    strong = make_packet(DAVE, BOB)
    strong["meta"]["hashcashToken"] = stamp_for(strong, bits=8)
    with as_sender(Wire(server)) as wire:
        assert error_code(wire.send(weak)) == "POW_INSUFFICIENT"
        assert wire.send(strong)["status"] == "OK"
