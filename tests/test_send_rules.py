"""SEND as SPEC §3, §4 and §5 define it, against a real server over real sockets.

Every refusal a SEND can get (BAD_REQUEST, INVALID_ADDRESS, HASH_MISMATCH, NOT_LOCAL,
UNKNOWN_RECIPIENT, POW_*, SIGNATURE_INVALID, FORBIDDEN, MAILBOX_FULL), the duplicate rule for
safe retries, and who may send as a local address.
"""

from __future__ import annotations

import copy
import hashlib
import time

import pytest
from helpers import (
    ALICE,
    BOB,
    BOB_EXAMPLE,
    CAROL,
    DAVE,
    DAVE_REMOTE,
    DIFFICULTY,
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

from mmtp_proto import hashcash
from mmtp_proto.canonical import message_hash
from mmtp_proto.packet import make_attachment

pytestmark = [pytest.mark.secure, pytest.mark.both_backends]

STAMP_VALIDITY = 172_800


@pytest.fixture
def bob_server(server):
    """A server where bob and alice (both on localhost) have registered keys."""
    registered(server, BOB, ALICE)
    return server


def restamp(packet, **kw):
    packet["meta"]["hashcashToken"] = stamp_for(packet, **kw)
    return packet


def stored_ids(server, email):
    with Wire(server) as wire:
        assert wire.auth(email)["status"] == "OK"
        return [m["meta"]["messageId"] for m in wire.receive(email)["messages"]]


# ---------------------------------------------------------------------------- OK


def test_send_ok_answer_has_every_field(bob_server):
    packet = make_packet(DAVE, BOB)
    with as_sender(Wire(bob_server)) as wire:
        answer = wire.send(packet)
    assert answer["status"] == "OK"
    assert isinstance(answer["message"], str) and answer["message"]
    assert answer["messageId"] == packet["meta"]["messageId"]
    assert answer["encrypted"] is False
    assert answer["signed"] is False
    assert answer["signatureVerified"] is False
    assert answer["duplicate"] is False


def test_send_encrypted_and_signed_is_reported_so(bob_server):
    packet = make_packet(ALICE, BOB, sign=True, encrypt=True)
    with Wire(bob_server, tls=False) as wire:
        answer = wire.send(packet)
    assert answer["status"] == "OK", answer
    assert (answer["encrypted"], answer["signed"], answer["signatureVerified"]) == (
        True,
        True,
        True,
    )


def test_send_works_over_plain_tcp(bob_server):
    registered(bob_server, DAVE)
    with Wire(bob_server, tls=False) as wire:  # no AUTH over plain TCP: signed instead
        assert wire.send(make_packet(DAVE, BOB, sign=True))["status"] == "OK"
    assert len(stored_ids(bob_server, BOB)) == 1


def test_send_reply_with_threading_fields_and_attachments(bob_server):
    first = make_packet(DAVE, BOB)
    reply = make_packet(DAVE, BOB)
    reply["meta"]["type"] = "REPLY"
    reply["meta"]["inReplyTo"] = first["meta"]["messageId"]
    reply["meta"]["references"] = [first["meta"]["messageId"]]
    reply["content"]["attachments"] = [make_attachment("a.txt", b"hello\n", "text/plain")]
    reply["verification"]["messageHash"] = message_hash(reply["content"])
    restamp(reply)
    with as_sender(Wire(bob_server)) as wire:
        assert wire.send(first)["status"] == "OK"
        assert wire.send(reply)["status"] == "OK"
        wire.auth(BOB)
        stored = wire.receive(BOB)["messages"][1]
    assert stored["meta"]["type"] == "REPLY"
    assert stored["meta"]["inReplyTo"] == first["meta"]["messageId"]
    assert stored["meta"]["references"] == [first["meta"]["messageId"]]
    assert stored["content"]["attachments"][0]["filename"] == "a.txt"


def test_empty_or_null_signature_means_unsigned(bob_server):
    for signature in ("", None):
        packet = make_packet(DAVE, BOB)
        packet["verification"]["signature"] = signature
        packet["meta"]["signed"] = True  # the server decides, not the client
        with as_sender(Wire(bob_server)) as wire:
            answer = wire.send(packet)
        assert answer["status"] == "OK", answer
        assert answer["signed"] is False
    with as_sender(Wire(bob_server)) as wire:
        wire.auth(BOB)
        for stored in wire.receive(BOB)["messages"]:
            assert stored["meta"]["signed"] is False
            assert stored["verification"]["signature"] is None


# ---------------------------------------------------------------------------- duplicates


def test_resending_the_same_packet_is_a_duplicate_and_stores_nothing(bob_server):
    packet = make_packet(DAVE, BOB)
    with as_sender(Wire(bob_server)) as wire:
        first = wire.send(packet)
        second = wire.send(packet)
    with Wire(bob_server, tls=False) as wire:
        third = wire.send(packet)
    assert first["duplicate"] is False
    for answer in (second, third):
        assert answer["status"] == "OK", answer
        assert answer["duplicate"] is True
        assert answer["messageId"] == packet["meta"]["messageId"]
    assert stored_ids(bob_server, BOB) == [packet["meta"]["messageId"]]


def test_duplicate_with_a_fresh_stamp_is_still_a_duplicate(bob_server):
    packet = make_packet(DAVE, BOB)
    with as_sender(Wire(bob_server)) as wire:
        assert wire.send(packet)["duplicate"] is False
        retry = restamp(copy.deepcopy(packet))
        assert wire.send(retry)["duplicate"] is True
        # The retry's stamp was not spent: it still pays for another message (same content).
        other = with_other_id(retry, hex_id(1))
        answer = wire.send(other)
    assert answer["status"] == "OK", answer
    assert answer["duplicate"] is False


def test_pipelined_duplicate_in_one_write_is_recognised(bob_server):
    packet = make_packet(DAVE, BOB)
    frame = {"action": "SEND", "data": {"packet": packet}}
    with as_sender(Wire(bob_server)) as wire:
        wire.send_frame(frame)
        wire.send_frame(frame)
        first, second = wire.read(), wire.read()
    assert (first["duplicate"], second["duplicate"]) == (False, True)
    assert len(stored_ids(bob_server, BOB)) == 1


def test_same_message_id_with_other_content_is_bad_request(bob_server):
    packet = make_packet(DAVE, BOB, body="original")
    other = make_packet(DAVE, BOB, body="changed", message_id=packet["meta"]["messageId"])
    with as_sender(Wire(bob_server)) as wire:
        assert wire.send(packet)["status"] == "OK"
        answer = wire.send(other)
    assert error_code(answer) == "BAD_REQUEST"
    assert "messageId" in answer["message"]


def test_same_message_id_to_another_recipient_is_a_new_message(bob_server):
    registered(bob_server, CAROL)
    to_bob = make_packet(DAVE, BOB)
    to_carol = make_packet(DAVE, CAROL, message_id=to_bob["meta"]["messageId"])
    with as_sender(Wire(bob_server)) as wire:
        assert wire.send(to_bob)["duplicate"] is False
        assert wire.send(to_carol)["duplicate"] is False


# ---------------------------------------------------------------------------- packet shape


def _mutations():
    def drop(*path):
        def apply(p):
            target = p
            for key in path[:-1]:
                target = target[key]
            del target[path[-1]]

        return apply

    def put(value, *path):
        def apply(p):
            target = p
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value

        return apply

    return [
        ("no-meta", drop("meta"), "meta"),
        ("no-sender", drop("sender"), "sender"),
        ("no-content", drop("content"), "content"),
        ("no-verification", drop("verification"), "verification"),
        ("unknown-top-field", put(1, "extra"), "extra"),
        ("unknown-meta-field", put(1, "meta", "colour"), "colour"),
        ("bad-type", put("SHOUT", "meta", "type"), "meta.type"),
        ("no-type", drop("meta", "type"), "meta.type"),
        ("uppercase-id", put("A" * 32, "meta", "messageId"), "meta.messageId"),
        ("short-id", put("a" * 31, "meta", "messageId"), "meta.messageId"),
        ("no-id", drop("meta", "messageId"), "meta.messageId"),
        ("string-timestamp", put("1700000000", "meta", "timestamp"), "meta.timestamp"),
        ("float-timestamp", put(1.5, "meta", "timestamp"), "meta.timestamp"),
        ("bool-timestamp", put(True, "meta", "timestamp"), "meta.timestamp"),
        ("negative-timestamp", put(-1, "meta", "timestamp"), "meta.timestamp"),
        ("future-timestamp", put(int(time.time()) + 7300, "meta", "timestamp"), "timestamp"),
        ("bad-in-reply-to", put("x", "meta", "inReplyTo"), "meta.inReplyTo"),
        ("bad-references", put(["x"], "meta", "references"), "meta.references"),
        ("content-not-object", put("hi", "content"), "content"),
        ("subject-not-string", put(5, "content", "subject"), "content.subject"),
        ("meta-encrypted-lies", put(True, "meta", "encrypted"), "meta.encrypted"),
        ("bad-hash-format", put("XYZ", "verification", "messageHash"), "messageHash"),
        ("bad-signature-format", put("not armor", "verification", "signature"), "signature"),
    ]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [(m, f) for _, m, f in _mutations()],
    ids=[name for name, _, _ in _mutations()],
)
def test_malformed_packet_is_bad_request_naming_the_field(bob_server, mutate, field):
    packet = make_packet(DAVE, BOB)
    mutate(packet)
    with as_sender(Wire(bob_server)) as wire:
        answer = wire.send(packet)
    assert error_code(answer) == "BAD_REQUEST", answer
    assert field in answer["message"], answer["message"]


@pytest.mark.parametrize("data", [{}, {"packet": None}, {"packet": []}, {"packet": "x"}])
def test_send_without_a_packet_object_is_bad_request(bob_server, data):
    with Wire(bob_server) as wire:
        assert wire.error("SEND", data) == "BAD_REQUEST"


def test_timestamp_up_to_an_hour_ahead_is_accepted(bob_server):
    packet = make_packet(DAVE, BOB, timestamp=int(time.time()) + 3000)
    with as_sender(Wire(bob_server)) as wire:
        assert wire.send(packet)["status"] == "OK"


@pytest.mark.parametrize("field", ["sender", "recipient"])
@pytest.mark.parametrize("address", ["bob@localhost", "(bob)", "(b ob)%(localhost)"])
def test_invalid_addresses_in_a_packet_get_invalid_address(bob_server, field, address):
    packet = make_packet(DAVE, BOB)
    packet[field] = address
    with as_sender(Wire(bob_server)) as wire:
        answer = wire.send(packet)
    assert error_code(answer) == "INVALID_ADDRESS"
    assert field in answer["message"]


@pytest.mark.parametrize("field", ["sender", "recipient"])
@pytest.mark.parametrize("address", [17, None, ["(bob)%(localhost)"]])
def test_ill_typed_addresses_in_a_packet_get_bad_request(bob_server, field, address):
    # SPEC §3: an ill-typed field is BAD_REQUEST (issue 11 item 13).
    packet = make_packet(DAVE, BOB)
    packet[field] = address
    with as_sender(Wire(bob_server)) as wire:
        answer = wire.send(packet)
    assert error_code(answer) == "BAD_REQUEST"
    assert field in answer["message"]


def test_content_not_matching_its_hash_is_hash_mismatch(bob_server):
    packet = make_packet(DAVE, BOB, body="what was hashed")
    packet["content"]["body"] = "what was sent"
    with as_sender(Wire(bob_server)) as wire:
        assert error_code(wire.send(packet)) == "HASH_MISMATCH"


def test_hash_depends_on_canonical_form_not_key_order(bob_server):
    packet = make_packet(DAVE, BOB)
    packet["content"] = dict(reversed(list(packet["content"].items())))
    with as_sender(Wire(bob_server)) as wire:
        assert wire.send(packet)["status"] == "OK"


# ---------------------------------------------------------------------------- recipients


def test_recipient_on_another_domain_is_not_local(bob_server):
    packet = make_packet(ALICE, "(someone)%(remote.org)", sign=True)
    with Wire(bob_server) as wire:
        assert error_code(wire.send(packet)) == "NOT_LOCAL"


def test_recipient_without_a_key_is_unknown_recipient(bob_server):
    packet = make_packet(DAVE, CAROL)
    with as_sender(Wire(bob_server)) as wire:
        answer = wire.send(packet)
    assert error_code(answer) == "UNKNOWN_RECIPIENT"
    assert CAROL in answer["message"]


def test_recipient_on_the_second_served_domain_works(server):
    registered(server, BOB_EXAMPLE)
    with as_sender(Wire(server)) as wire:
        answer = wire.send(make_packet(DAVE, BOB_EXAMPLE))
    assert answer["status"] == "OK"
    assert stored_ids(server, BOB_EXAMPLE) == [answer["messageId"]]


# ---------------------------------------------------------------------------- stamps


def _tweak_token(stamp, **fields):
    """Change fields of a stamp's token (ver, bits, date, resource, ext, rand, counter)."""
    names = ["ver", "bits", "date", "resource", "ext", "rand", "counter"]
    parts = dict(zip(names, stamp["token"].split(":"), strict=True))
    parts.update(fields)
    return {"token": ":".join(parts[n] for n in names), "counter": stamp["counter"]}


def _failing_counter(stamp):
    """A counter whose token hash lacks the stamp's claimed bits."""
    head = stamp["token"].rsplit(":", 1)[0]
    bits = int(stamp["token"].split(":")[1])
    for counter in range(10**6):
        digest = hashlib.sha256(f"{head}:{counter}".encode()).digest()
        if hashcash.leading_zero_bits(digest) < bits:
            return {"token": f"{head}:{counter}", "counter": counter}
    raise AssertionError("unreachable")


def _stamp_cases():
    def none(packet, stamp):
        return None

    def not_object(packet, stamp):
        return stamp["token"]

    def no_token(packet, stamp):
        return {"counter": stamp["counter"]}

    def six_fields(packet, stamp):
        head, _, counter = stamp["token"].rpartition(":")
        return {"token": head.rsplit(":", 1)[0] + ":" + counter, "counter": stamp["counter"]}

    def short_rand(packet, stamp):
        return _tweak_token(stamp, rand="abcdefghijk")

    def leading_zero_counter(packet, stamp):
        return _tweak_token(stamp, counter="0" + str(stamp["counter"]))

    def signed_counter(packet, stamp):
        return _tweak_token(stamp, counter="+" + str(stamp["counter"]))

    def counter_field_differs(packet, stamp):
        return {"token": stamp["token"], "counter": stamp["counter"] + 1}

    def counter_field_string(packet, stamp):
        return {"token": stamp["token"], "counter": str(stamp["counter"])}

    def hash_lacks_bits(packet, stamp):
        return _failing_counter(stamp)

    def claims_more_than_it_has(packet, stamp):
        return _tweak_token(stamp, bits="40")

    def bad_version(packet, stamp):
        return _tweak_token(stamp, ver="0")

    def bad_date(packet, stamp):
        return _tweak_token(stamp, date="261399000000")

    def too_few_bits(packet, stamp):
        return stamp_for(packet, bits=DIFFICULTY - 1)

    def too_old(packet, stamp):
        return stamp_for(packet, now=int(time.time()) - STAMP_VALIDITY - 120)

    def from_the_future(packet, stamp):
        return stamp_for(packet, now=int(time.time()) + 3600 + 120)

    def other_recipient(packet, stamp):
        return hashcash.mint(CAROL, DIFFICULTY, packet["verification"]["messageHash"])

    def other_content(packet, stamp):
        return hashcash.mint(BOB, DIFFICULTY, message_hash({"subject": "x", "body": "y"}))

    return [
        ("missing", none, "POW_REQUIRED"),
        ("not-an-object", not_object, "POW_INVALID"),
        ("no-token", no_token, "POW_INVALID"),
        ("six-fields", six_fields, "POW_INVALID"),
        ("short-rand", short_rand, "POW_INVALID"),
        ("leading-zero-counter", leading_zero_counter, "POW_INVALID"),
        ("signed-counter", signed_counter, "POW_INVALID"),
        ("counter-field-differs", counter_field_differs, "POW_INVALID"),
        ("counter-field-string", counter_field_string, "POW_INVALID"),
        ("hash-lacks-bits", hash_lacks_bits, "POW_INVALID"),
        ("claims-more-than-it-has", claims_more_than_it_has, "POW_INVALID"),
        ("bad-version", bad_version, "POW_INVALID"),
        ("bad-date", bad_date, "POW_INVALID"),
        ("too-few-bits", too_few_bits, "POW_INSUFFICIENT"),
        ("too-old", too_old, "POW_EXPIRED"),
        ("from-the-future", from_the_future, "POW_EXPIRED"),
        ("other-recipient", other_recipient, "POW_MISMATCH"),
        ("other-content", other_content, "POW_MISMATCH"),
    ]


@pytest.mark.parametrize(
    ("make_stamp", "code"),
    [(f, c) for _, f, c in _stamp_cases()],
    ids=[name for name, _, _ in _stamp_cases()],
)
def test_bad_stamps_get_their_pow_code(bob_server, make_stamp, code):
    packet = make_packet(DAVE, BOB)
    packet["meta"]["hashcashToken"] = make_stamp(packet, packet["meta"]["hashcashToken"])
    with as_sender(Wire(bob_server)) as wire:
        answer = wire.send(packet)
        assert error_code(answer) == code, answer
        # The same message with a good stamp then goes through: nothing was half-stored.
        answer = wire.send(restamp(packet))
        assert answer["status"] == "OK", answer


def test_missing_stamp_key_is_pow_required(bob_server):
    packet = make_packet(DAVE, BOB)
    del packet["meta"]["hashcashToken"]
    with as_sender(Wire(bob_server)) as wire:
        assert error_code(wire.send(packet)) == "POW_REQUIRED"


def test_stamp_above_the_difficulty_is_accepted(bob_server):
    packet = make_packet(DAVE, BOB)
    restamp(packet, bits=DIFFICULTY + 4)
    with as_sender(Wire(bob_server)) as wire:
        assert wire.send(packet)["status"] == "OK"


def test_stamp_a_day_old_is_still_valid(bob_server):
    packet = make_packet(DAVE, BOB)
    restamp(packet, now=int(time.time()) - 86_400)
    with as_sender(Wire(bob_server)) as wire:
        assert wire.send(packet)["status"] == "OK"


def test_reused_stamp_on_another_message_is_pow_replayed(bob_server):
    packet = make_packet(DAVE, BOB)
    with as_sender(Wire(bob_server)) as wire:
        assert wire.send(packet)["status"] == "OK"
        answer = wire.send(with_other_id(packet, hex_id(2)))
    assert error_code(answer) == "POW_REPLAYED"
    assert stored_ids(bob_server, BOB) == [packet["meta"]["messageId"]]


# ---------------------------------------------------------------------------- signatures


def test_signature_by_another_key_is_signature_invalid(bob_server):
    packet = resign(make_packet(ALICE, BOB), key_for(MALLORY))
    with Wire(bob_server) as wire:
        answer = wire.send(packet)
    assert error_code(answer) == "SIGNATURE_INVALID"
    assert ALICE in answer["message"]


def test_signature_for_another_recipient_is_signature_invalid(bob_server):
    """The signature binds the recipient: a signed message cannot be redirected."""
    registered(bob_server, CAROL)
    packet = make_packet(ALICE, BOB, sign=True)
    packet["recipient"] = CAROL
    restamp(packet)
    with Wire(bob_server) as wire:
        assert error_code(wire.send(packet)) == "SIGNATURE_INVALID"


@pytest.mark.parametrize("field", ["messageId", "timestamp"])
def test_signature_over_another_id_or_time_is_signature_invalid(bob_server, field):
    packet = make_packet(ALICE, BOB, sign=True)
    packet["meta"][field] = hex_id(3) if field == "messageId" else packet["meta"][field] - 1
    with Wire(bob_server) as wire:
        assert error_code(wire.send(packet)) == "SIGNATURE_INVALID"


def test_garbled_signature_from_a_registered_sender_is_signature_invalid(bob_server):
    packet = make_packet(ALICE, BOB)
    packet["verification"]["signature"] = (
        "-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n"
    )
    with Wire(bob_server) as wire:
        assert error_code(wire.send(packet)) == "SIGNATURE_INVALID"


def test_signature_invalid_even_when_authenticated_as_the_sender(bob_server):
    packet = resign(make_packet(ALICE, BOB), key_for(MALLORY))
    with Wire(bob_server) as wire:
        assert wire.auth(ALICE)["status"] == "OK"
        assert error_code(wire.send(packet)) == "SIGNATURE_INVALID"


def test_local_sender_without_a_key_signing_is_forbidden_not_unverified(bob_server):
    # A signature that cannot be checked (no key here) does not stand in for AUTH.
    with Wire(bob_server) as wire:
        assert error_code(wire.send(make_packet(DAVE, BOB, sign=True))) == "FORBIDDEN"
        bad = resign(make_packet(DAVE, BOB), key_for(MALLORY))
        assert error_code(wire.send(bad)) == "FORBIDDEN"


def test_signed_local_sender_with_registered_key_needs_no_auth(bob_server):
    packet = make_packet(ALICE, BOB, sign=True)
    with Wire(bob_server, tls=False) as wire:
        answer = wire.send(packet)
    assert answer["status"] == "OK", answer
    assert answer["signatureVerified"] is True


# ---------------------------------------------------------------------------- sender rule


def test_unsigned_local_sender_without_auth_is_forbidden(bob_server):
    packet = make_packet(ALICE, BOB)
    with Wire(bob_server) as wire:
        answer = wire.send(packet)
    assert error_code(answer) == "FORBIDDEN"
    assert ALICE in answer["message"]


def test_signed_local_sender_without_a_registered_key_is_forbidden(bob_server):
    packet = make_packet(CAROL, BOB, sign=True)  # carol has no key here
    with Wire(bob_server) as wire:
        assert error_code(wire.send(packet)) == "FORBIDDEN"


def test_sender_on_the_second_served_domain_is_local_too(bob_server):
    packet = make_packet(BOB_EXAMPLE, BOB)
    with Wire(bob_server) as wire:
        assert error_code(wire.send(packet)) == "FORBIDDEN"


def test_unsigned_local_sender_authenticated_as_someone_else_is_forbidden(bob_server):
    packet = make_packet(ALICE, BOB)
    with Wire(bob_server) as wire:
        assert wire.auth(BOB)["status"] == "OK"
        assert error_code(wire.send(packet)) == "FORBIDDEN"


def test_unsigned_local_sender_authenticated_as_the_sender_is_ok(bob_server):
    packet = make_packet(ALICE, BOB)
    with Wire(bob_server) as wire:
        assert wire.auth(ALICE)["status"] == "OK"
        answer = wire.send(packet)
    assert answer["status"] == "OK", answer
    assert (answer["signed"], answer["signatureVerified"]) == (False, False)


def test_forbidden_send_does_not_spend_the_stamp(bob_server):
    packet = make_packet(ALICE, BOB)
    with Wire(bob_server) as wire:
        assert error_code(wire.send(packet)) == "FORBIDDEN"
        wire.auth(ALICE)
        assert wire.send(packet)["duplicate"] is False


def test_remote_sender_is_forbidden_on_a_server_that_does_not_relay(bob_server):
    # SPEC §3: only a connection domain-authenticated for remote.org speaks for its users,
    # and a server without federation has no such connection.
    assert bob_server.federation is None
    with Wire(bob_server) as wire:
        answer = wire.send(make_packet(DAVE_REMOTE, BOB))
        assert error_code(answer) == "FORBIDDEN"
        assert DAVE_REMOTE in answer["message"] and "remote.org" in answer["message"]
        assert "domain-authenticated" in answer["message"]
        # Neither a signature (no key of dave's is known here) nor AUTH as a local user helps.
        assert error_code(wire.send(make_packet(DAVE_REMOTE, BOB, sign=True))) == "FORBIDDEN"
        assert wire.auth(ALICE)["status"] == "OK"
        assert error_code(wire.send(make_packet(DAVE_REMOTE, BOB))) == "FORBIDDEN"
    with Wire(bob_server, tls=False) as wire:
        assert error_code(wire.send(make_packet(DAVE_REMOTE, BOB))) == "FORBIDDEN"
    assert stored_ids(bob_server, BOB) == []


def test_forbidden_remote_sender_does_not_spend_the_stamp(bob_server):
    packet = make_packet(DAVE_REMOTE, BOB, body="same content")
    with Wire(bob_server) as wire:
        assert error_code(wire.send(packet)) == "FORBIDDEN"
    # The stamp pays for the recipient and content, whoever sends: still unspent.
    local = make_packet(DAVE, BOB, body="same content")
    local["meta"]["hashcashToken"] = packet["meta"]["hashcashToken"]
    with as_sender(Wire(bob_server)) as wire:
        assert wire.send(local)["status"] == "OK"


# ---------------------------------------------------------------------------- mailbox size


def test_full_mailbox_is_mailbox_full(start_server):
    server = start_server(mailbox_max_messages=2)
    registered(server, BOB)
    packets = [make_packet(DAVE, BOB, body=f"n{n}") for n in range(3)]
    with as_sender(Wire(server)) as wire:
        assert wire.send(packets[0])["status"] == "OK"
        assert wire.send(packets[1])["status"] == "OK"
        answer = wire.send(packets[2])
        assert error_code(answer) == "MAILBOX_FULL"
        assert BOB in answer["message"]
        # A retry of something already stored is still answered as a duplicate.
        assert wire.send(packets[0])["duplicate"] is True
        with Wire(server) as owner:
            owner.auth(BOB)
            first_id = packets[0]["meta"]["messageId"]
            assert owner.ok("DELETE", {"email": BOB, "messageIds": [first_id]})["deleted"] == 1
        # Room again; the refused message's stamp was not spent.
        answer = wire.send(packets[2])
        assert answer["status"] == "OK", answer
    with Wire(server) as owner:
        owner.auth(BOB)
        assert owner.ok("CHECK", {"email": BOB})["count"] == 2
