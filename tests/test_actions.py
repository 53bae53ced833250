"""The wire as SPEC §1, §2 and §5 describe it, over real sockets against a real server.

Greeting, pipelining, frame limit and the mailbox and directory actions: RECEIVE, CHECK,
DELETE, REQUEST_PUBLIC_KEY. The envelope rules (ids, BAD_JSON/BAD_REQUEST, blank lines,
unknown actions) are checked in memory, in test_server_connection.py.
"""

from __future__ import annotations

import json
import re

import pytest
from helpers import (
    ALICE,
    BOB,
    BOB_EXAMPLE,
    CAROL,
    DAVE,
    DAVE_REMOTE,
    DIFFICULTY,
    Wire,
    as_sender,
    auth_signature,
    error_code,
    hex_id,
    key_for,
    make_packet,
    registered,
)

from mmtp_proto import __version__
from mmtp_proto.pgp import PublicKey

pytestmark = [pytest.mark.secure, pytest.mark.both_backends]

ACTIONS = [
    "SEND",
    "RECEIVE",
    "CHECK",
    "DELETE",
    "REGISTER_KEY",
    "REQUEST_PUBLIC_KEY",
    "AUTH",
    "POLICY",
]


def deliver(server, recipient: str, count: int, sender: str = DAVE) -> list[str]:
    """Store `count` unsigned messages from `sender` (a local user, authenticated as it);
    return their ids in order."""
    ids = []
    with as_sender(Wire(server), sender) as wire:
        for n in range(count):
            packet = make_packet(sender, recipient, subject=f"#{n}", body=f"message {n}")
            assert wire.send(packet)["status"] == "OK"
            ids.append(packet["meta"]["messageId"])
    return ids


# ---------------------------------------------------------------------------- greeting


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
def test_greeting_has_every_field_of_the_spec(server, tls):
    with Wire(server, tls=tls) as wire:
        greeting = wire.greeting
    assert greeting["status"] == "OK"
    assert greeting["message"] == "MMTP Server Ready"
    assert greeting["protocol"] == "MMTP/1"
    assert greeting["server"] == f"mmtp-server/{__version__}"
    assert sorted(greeting["domains"]) == ["example.com", "localhost"]
    assert greeting["difficulty"] == DIFFICULTY
    assert greeting["maxFrameBytes"] == server.config.max_frame_bytes
    assert greeting["stampValiditySeconds"] == 172_800
    assert re.fullmatch(r"[0-9a-f]{32,}", greeting["nonce"])
    assert greeting["tls"] is tls
    assert greeting["features"]["plainAuth"] is False
    assert greeting["actions"] == ACTIONS
    assert "id" not in greeting


def test_greeting_nonce_is_fresh_per_connection(server):
    nonces = set()
    for tls in (True, False, True, False):
        with Wire(server, tls=tls) as wire:
            nonces.add(wire.greeting["nonce"])
    assert len(nonces) == 4


def test_greeting_reflects_the_configuration(start_server):
    server = start_server(
        allow_plain_auth=True, max_frame_bytes=8192, stamp_validity_seconds=3600, difficulty=7
    )
    with Wire(server, tls=False) as wire:
        greeting = wire.greeting
    assert greeting["features"]["plainAuth"] is True
    assert greeting["maxFrameBytes"] == 8192
    assert greeting["stampValiditySeconds"] == 3600
    assert greeting["difficulty"] == 7


# ---------------------------------------------------------------------------- envelope


def test_pipelined_requests_are_answered_in_order(server):
    registered(server, ALICE)
    frames = []
    for n in range(30):
        if n % 3 == 0:
            frames.append({"action": "REQUEST_PUBLIC_KEY", "id": n, "data": {"email": ALICE}})
        elif n % 3 == 1:
            frames.append({"action": "REQUEST_PUBLIC_KEY", "id": n, "data": {"email": CAROL}})
        else:
            frames.append({"action": "CHECK", "id": n, "data": {"email": ALICE}})
    payload = b"".join(json.dumps(f).encode() + b"\n" for f in frames)
    with Wire(server) as wire:
        wire.send_bytes(payload)
        answers = [wire.read() for _ in frames]
    assert [a["id"] for a in answers] == list(range(30))
    for n, answer in enumerate(answers):
        expected = {0: "OK", 1: "KEY_NOT_FOUND", 2: "AUTH_REQUIRED"}[n % 3]
        got = answer["status"] if answer["status"] == "OK" else answer["error"]["code"]
        assert got == expected, answer


def test_pipelined_sends_are_each_acknowledged_in_order(server):
    registered(server, BOB)
    packets = [make_packet(DAVE, BOB, body=f"pipelined {n}") for n in range(5)]
    frames = [{"action": "SEND", "id": n, "data": {"packet": p}} for n, p in enumerate(packets)]
    with as_sender(Wire(server)) as wire:
        wire.send_bytes(b"".join(json.dumps(f).encode() + b"\n" for f in frames))
        answers = [wire.read() for _ in frames]
    with Wire(server) as wire:
        assert wire.auth(BOB)["status"] == "OK"
        stored = wire.receive(BOB)["messages"]
    assert [a["id"] for a in answers] == list(range(5))
    assert [a["messageId"] for a in answers] == [p["meta"]["messageId"] for p in packets]
    assert [m["meta"]["messageId"] for m in stored] == [p["meta"]["messageId"] for p in packets]


# ---------------------------------------------------------------------------- frame limit


def _padded_frame(size: int) -> bytes:
    """A frame of exactly `size` bytes before the LF (an UNKNOWN_ACTION request)."""
    head = b'{"action":"FROB","id":"'
    tail = b'"}'
    frame = head + b"x" * (size - len(head) - len(tail)) + tail
    assert len(frame) == size
    return frame


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
def test_frame_at_the_limit_is_accepted(start_server, tls):
    server = start_server(max_frame_bytes=4096)
    with Wire(server, tls=tls) as wire:
        wire.send_bytes(_padded_frame(4096) + b"\n")
        assert error_code(wire.read()) == "UNKNOWN_ACTION"
        assert error_code(wire.request("FROB")) == "UNKNOWN_ACTION"


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
def test_frame_over_the_limit_gets_frame_too_large_then_close(start_server, tls):
    server = start_server(max_frame_bytes=4096)
    with Wire(server, tls=tls) as wire:
        # A request before the big one is still answered, in order.
        wire.send_bytes(b'{"action":"FROB","id":1}\n' + _padded_frame(4097) + b"\n")
        assert wire.read()["id"] == 1
        answer = wire.read()
        assert error_code(answer) == "FRAME_TOO_LARGE"
        assert "id" not in answer
        assert wire.closed_by_server()
    # The server itself is fine.
    with Wire(server, tls=tls) as wire:
        assert error_code(wire.request("FROB")) == "UNKNOWN_ACTION"


def test_unterminated_frame_over_the_limit_is_refused_without_waiting_for_lf(start_server):
    server = start_server(max_frame_bytes=4096)
    with Wire(server, tls=False) as wire:
        wire.send_bytes(b'{"action":"SEND","data":"' + b"y" * 6000)
        assert error_code(wire.read()) == "FRAME_TOO_LARGE"
        assert wire.closed_by_server()


# ---------------------------------------------------------------------------- addresses


def test_addresses_are_lowercased_everywhere(server):
    registered(server, BOB_EXAMPLE)
    alice = key_for(ALICE)
    with Wire(server) as wire:
        mixed = {"email": "(ALICE)%(LocalHost)", "publicKey": alice.public.armored}
        assert wire.ok("REGISTER_KEY", mixed)["status"] == "OK"
        # Signature and stamp cover the lowercased addresses; the wire carries mixed case.
        packet = make_packet(ALICE, BOB_EXAMPLE, sign=True)
        packet["sender"] = "(Alice)%(LOCALHOST)"
        packet["recipient"] = "(BOB)%(Example.COM)"
        answer = wire.send(packet)
        assert answer["status"] == "OK", answer
        assert answer["signatureVerified"] is True
        directory = wire.ok("REQUEST_PUBLIC_KEY", {"email": "(Alice)%(LOCALHOST)"})
        assert directory["email"] == ALICE
        assert wire.auth(BOB_EXAMPLE)["email"] == BOB_EXAMPLE
        stored = wire.receive("(Bob)%(Example.Com)")["messages"]
    assert len(stored) == 1
    assert stored[0]["recipient"] == BOB_EXAMPLE
    assert stored[0]["sender"] == ALICE


def test_auth_accepts_a_mixed_case_address(server):
    registered(server, BOB)
    with Wire(server) as wire:
        # The challenge covers the lowercased address; the request may use any case.
        signature = auth_signature(wire.greeting, BOB)
        answer = wire.request("AUTH", {"email": "(BoB)%(LOCALhost)", "signature": signature})
        assert answer["status"] == "OK", answer
        assert answer["email"] == BOB
        assert wire.ok("CHECK", {"email": "(BOB)%(localhost)"})["count"] == 0


@pytest.mark.parametrize(
    "address",
    ["bob@localhost", "(bob)%()", "(.bob)%(localhost)", "(b..b)%(localhost)", "(bob)%(nodot)", 7],
)
def test_invalid_addresses_get_invalid_address(server, address):
    with Wire(server) as wire:
        for action in ("REQUEST_PUBLIC_KEY", "CHECK", "RECEIVE"):
            assert wire.error(action, {"email": address}) == "INVALID_ADDRESS", action


# ---------------------------------------------------------------------------- RECEIVE


def test_receive_returns_messages_oldest_first_and_keeps_them(server):
    registered(server, BOB)
    ids = deliver(server, BOB, 3)
    with Wire(server) as wire:
        wire.auth(BOB)
        first = wire.receive(BOB)
        second = wire.receive(BOB)
        assert wire.ok("CHECK", {"email": BOB})["count"] == 3
    assert first["count"] == 3
    assert first["more"] is False
    assert [m["meta"]["messageId"] for m in first["messages"]] == ids
    assert [m["meta"]["messageId"] for m in second["messages"]] == ids
    for message in first["messages"]:
        assert isinstance(message["meta"]["receivedAt"], int)
        assert not isinstance(message["meta"]["receivedAt"], bool)
        assert message["meta"]["signatureVerified"] is False
        assert message["meta"]["signed"] is False
        assert message["recipient"] == BOB
    assert isinstance(first["cursor"], str)


def test_received_packets_are_the_packets_sent(server):
    registered(server, BOB, ALICE)
    packet = make_packet(ALICE, BOB, sign=True, encrypt=True)
    # The client's own claim is ignored: the server sets signatureVerified itself.
    packet["meta"]["signatureVerified"] = False
    with Wire(server) as wire:
        assert wire.send(packet)["status"] == "OK"
        wire.auth(BOB)
        (stored,) = wire.receive(BOB)["messages"]
    assert stored["content"] == packet["content"]
    assert stored["verification"] == packet["verification"]
    assert stored["sender"] == ALICE
    assert stored["meta"]["signatureVerified"] is True
    assert stored["meta"]["signed"] is True
    assert stored["meta"]["encrypted"] is True
    assert stored["meta"]["hashcashToken"] == packet["meta"]["hashcashToken"]
    for field in ("type", "messageId", "timestamp"):
        assert stored["meta"][field] == packet["meta"][field]


def test_receive_server_sets_signature_verified_false_for_a_claimed_true(server):
    registered(server, BOB)
    packet = make_packet(DAVE, BOB)
    packet["meta"]["signed"] = True
    packet["meta"]["signatureVerified"] = True  # a lie: there is no signature to verify
    with as_sender(Wire(server)) as wire:
        answer = wire.send(packet)
        assert answer["status"] == "OK"
        assert answer["signatureVerified"] is False
    with Wire(server) as wire:
        wire.auth(BOB)
        (stored,) = wire.receive(BOB)["messages"]
    assert stored["meta"]["signatureVerified"] is False
    assert stored["meta"]["signed"] is False


def test_receive_limit_default_and_paging_with_the_cursor(server):
    registered(server, BOB)
    ids = deliver(server, BOB, 7)
    with Wire(server) as wire:
        wire.auth(BOB)
        page1 = wire.receive(BOB, limit=3)
        page2 = wire.receive(BOB, limit=3, since=page1["cursor"])
        page3 = wire.receive(BOB, limit=3, since=page2["cursor"])
        empty = wire.receive(BOB, since=page3["cursor"])
    assert (page1["count"], page1["more"]) == (3, True)
    assert (page2["count"], page2["more"]) == (3, True)
    assert (page3["count"], page3["more"]) == (1, False)
    got = [m["meta"]["messageId"] for p in (page1, page2, page3) for m in p["messages"]]
    assert got == ids
    assert (empty["count"], empty["more"], empty["messages"]) == (0, False, [])
    # An empty page keeps the cursor where it was.
    assert empty["cursor"] == page3["cursor"]


def test_receive_since_cursor_returns_only_new_messages(server):
    registered(server, BOB, CAROL)
    deliver(server, BOB, 2)
    with Wire(server) as wire:
        wire.auth(BOB)
        seen = wire.receive(BOB)
        deliver(server, CAROL, 2)  # other mailboxes do not show up
        new_ids = deliver(server, BOB, 2)
        later = wire.receive(BOB, since=seen["cursor"])
        again = wire.receive(BOB, since=later["cursor"])
        everything = wire.receive(BOB)
    assert [m["meta"]["messageId"] for m in later["messages"]] == new_ids
    assert again["count"] == 0
    assert everything["count"] == 4


def test_receive_cursor_of_an_empty_mailbox_still_sees_later_mail(server):
    registered(server, BOB, CAROL)
    deliver(server, CAROL, 3)
    with Wire(server) as wire:
        wire.auth(BOB)
        empty = wire.receive(BOB)
        assert empty["count"] == 0
        ids = deliver(server, BOB, 1)
        later = wire.receive(BOB, since=empty["cursor"])
    assert [m["meta"]["messageId"] for m in later["messages"]] == ids


def test_receive_default_limit_is_100_and_max_is_1000(server):
    registered(server, BOB)
    deliver(server, BOB, 101)
    with Wire(server) as wire:
        wire.auth(BOB)
        default = wire.receive(BOB)
        maximum = wire.receive(BOB, limit=1000)
        assert wire.error("RECEIVE", {"email": BOB, "limit": 1001}) == "BAD_REQUEST"
    assert (default["count"], default["more"]) == (100, True)
    assert (maximum["count"], maximum["more"]) == (101, False)


@pytest.mark.parametrize("limit", [0, -1, 1001, "5", 2.0, True, None, [1]], ids=repr)
def test_receive_invalid_limit_is_bad_request(server, limit):
    registered(server, BOB)
    with Wire(server) as wire:
        wire.auth(BOB)
        answer = wire.request("RECEIVE", {"email": BOB, "limit": limit})
    assert error_code(answer) == "BAD_REQUEST"
    assert "limit" in answer["message"]


@pytest.mark.parametrize("since", ["", "garbage", "s-1", "s1x", 5, {"seq": 1}, "s" + "9" * 30])
def test_receive_invalid_cursor_is_bad_request(server, since):
    registered(server, BOB)
    with Wire(server) as wire:
        wire.auth(BOB)
        assert wire.error("RECEIVE", {"email": BOB, "since": since}) == "BAD_REQUEST"


def test_receive_since_null_means_from_the_start(server):
    registered(server, BOB)
    ids = deliver(server, BOB, 2)
    with Wire(server) as wire:
        wire.auth(BOB)
        answer = wire.receive(BOB, since=None)
    assert [m["meta"]["messageId"] for m in answer["messages"]] == ids


# ---------------------------------------------------------------------------- CHECK, DELETE


def test_check_counts_the_mailbox(server):
    registered(server, BOB)
    with Wire(server) as wire:
        wire.auth(BOB)
        assert wire.ok("CHECK", {"email": BOB})["count"] == 0
        deliver(server, BOB, 2)
        assert wire.ok("CHECK", {"email": BOB})["count"] == 2


def test_delete_removes_the_given_messages_and_counts_them(server):
    registered(server, BOB)
    ids = deliver(server, BOB, 3)
    unknown = hex_id(1)
    with Wire(server) as wire:
        wire.auth(BOB)
        assert wire.ok("DELETE", {"email": BOB, "messageIds": [ids[0], unknown]})["deleted"] == 1
        assert wire.ok("DELETE", {"email": BOB, "messageIds": [ids[0]]})["deleted"] == 0
        assert wire.ok("DELETE", {"email": BOB, "messageIds": []})["deleted"] == 0
        # Repeating an id in one request removes it once.
        assert wire.ok("DELETE", {"email": BOB, "messageIds": [ids[1], ids[1]]})["deleted"] == 1
        left = wire.receive(BOB)
        assert wire.ok("CHECK", {"email": BOB})["count"] == 1
    assert [m["meta"]["messageId"] for m in left["messages"]] == [ids[2]]


def test_delete_only_touches_the_authenticated_mailbox(server):
    registered(server, BOB, CAROL)
    bob_ids = deliver(server, BOB, 1)
    with Wire(server) as wire:
        wire.auth(CAROL)
        assert wire.ok("DELETE", {"email": CAROL, "messageIds": bob_ids})["deleted"] == 0
        assert wire.error("DELETE", {"email": BOB, "messageIds": bob_ids}) == "FORBIDDEN"
    with Wire(server) as wire:
        wire.auth(BOB)
        assert wire.ok("CHECK", {"email": BOB})["count"] == 1


@pytest.mark.parametrize(
    "message_ids",
    [None, "abc", ["ABCDEF" * 5 + "AB"], ["not-an-id"], [1], ["0" * 31], ["0" * 32] * 1001],
    ids=["missing", "string", "uppercase", "not-hex", "number", "short", "too-many"],
)
def test_delete_with_bad_ids_is_bad_request(server, message_ids):
    registered(server, BOB)
    data = {"email": BOB}
    if message_ids is not None:
        data["messageIds"] = message_ids
    with Wire(server) as wire:
        wire.auth(BOB)
        assert wire.error("DELETE", data) == "BAD_REQUEST"


def test_deleted_messages_stay_deleted_after_restart(start_server, tmp_path):
    data_dir = tmp_path / "restart"
    server = start_server(data_dir=data_dir)
    registered(server, BOB)
    ids = deliver(server, BOB, 2)
    with Wire(server) as wire:
        wire.auth(BOB)
        assert wire.ok("DELETE", {"email": BOB, "messageIds": ids[:1]})["deleted"] == 1
    server.stop()
    server = start_server(data_dir=data_dir)
    with Wire(server) as wire:
        wire.auth(BOB)
        left = wire.receive(BOB)["messages"]
    assert [m["meta"]["messageId"] for m in left] == ids[1:]


@pytest.mark.parametrize(
    ("action", "extra"),
    [("RECEIVE", {}), ("CHECK", {}), ("DELETE", {"messageIds": []})],
)
def test_mailbox_actions_need_auth_as_the_owner(server, action, extra):
    registered(server, BOB, CAROL)
    deliver(server, BOB, 1)
    with Wire(server) as wire:
        assert wire.error(action, {"email": BOB, **extra}) == "AUTH_REQUIRED"
        assert wire.auth(CAROL)["status"] == "OK"
        assert wire.error(action, {"email": BOB, **extra}) == "FORBIDDEN"
        assert wire.ok(action, {"email": CAROL, **extra})["status"] == "OK"
    with Wire(server, tls=False) as wire:
        # Plain connections cannot authenticate (by default), so they never read a mailbox.
        assert wire.error(action, {"email": BOB, **extra}) == "AUTH_REQUIRED"


def test_auth_lasts_for_the_connection_only(server):
    registered(server, BOB)
    with Wire(server) as wire:
        wire.auth(BOB)
        assert wire.ok("CHECK", {"email": BOB})["count"] == 0
    with Wire(server) as wire:
        assert wire.error("CHECK", {"email": BOB}) == "AUTH_REQUIRED"


# ---------------------------------------------------------------------------- directory


def test_request_public_key_returns_the_registered_key(server):
    with Wire(server) as wire:
        registered_answer = wire.register(ALICE)
        assert registered_answer["status"] == "OK"
        answer = wire.ok("REQUEST_PUBLIC_KEY", {"email": ALICE})
    assert answer["email"] == ALICE
    assert answer["fingerprint"] == key_for(ALICE).public.fingerprint
    assert answer["fingerprint"] == registered_answer["fingerprint"]
    assert "PRIVATE" not in answer["publicKey"]
    assert answer["publicKey"].startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert PublicKey.from_armored(answer["publicKey"]).fingerprint == answer["fingerprint"]


def test_request_public_key_errors(server):
    with Wire(server, tls=False) as wire:
        assert wire.error("REQUEST_PUBLIC_KEY", {"email": CAROL}) == "KEY_NOT_FOUND"
        assert wire.error("REQUEST_PUBLIC_KEY", {"email": DAVE_REMOTE}) == "NOT_LOCAL"
        assert wire.error("REQUEST_PUBLIC_KEY", {}) == "BAD_REQUEST"
        assert wire.error("REQUEST_PUBLIC_KEY", {"email": "nobody"}) == "INVALID_ADDRESS"


# ---------------------------------------------------------------------------- connections


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
def test_connections_over_the_per_address_cap_are_told_then_closed(start_server, tls):
    server = start_server(max_connections_per_ip=2)
    first, second = Wire(server, tls=tls), Wire(server, tls=tls)
    try:
        with Wire(server, tls=tls) as third:
            assert error_code(third.greeting) == "TOO_MANY_CONNECTIONS"
            assert third.closed_by_server()
        # The two within the cap work normally.
        assert error_code(first.request("FROB")) == "UNKNOWN_ACTION"
    finally:
        first.close()
        second.close()
