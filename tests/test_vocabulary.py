"""The typed vocabulary (`mmtp_proto.actions`, SPEC §1 and §5): requests parsed the way the
server judges them, answers built the way it sends them and read the way a client must
(unknown keys ignored, a missing or ill-typed field refused)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmtp_proto import errors, limits
from mmtp_proto.actions import (
    AuthAnswer,
    AuthRequest,
    CheckAnswer,
    CheckRequest,
    DeleteAnswer,
    DeleteRequest,
    Features,
    Greeting,
    ReceiveAnswer,
    ReceiveRequest,
    RegisterKeyAnswer,
    RegisterKeyRequest,
    RequestPublicKeyAnswer,
    RequestPublicKeyRequest,
    SendAnswer,
    SendRequest,
)
from mmtp_proto.client import Connection
from mmtp_proto.errors import LocalError, MMTPError
from mmtp_proto.packet import MAX_SIGNATURE_CHARS
from mmtp_proto.protocol import ACTIONS

BOB = "(bob)%(localhost)"
ID = "0123456789abcdef" * 2
REQUESTS = [
    AuthRequest,
    CheckRequest,
    DeleteRequest,
    ReceiveRequest,
    RegisterKeyRequest,
    RequestPublicKeyRequest,
    SendRequest,
]
ANSWERS = [
    AuthAnswer,
    CheckAnswer,
    DeleteAnswer,
    ReceiveAnswer,
    RegisterKeyAnswer,
    RequestPublicKeyAnswer,
    SendAnswer,
    Greeting,
]


def refused(parse: Any, data: dict[str, Any]) -> MMTPError:
    with pytest.raises(MMTPError) as caught:
        parse(data)
    return caught.value


# ---------------------------------------------------------------------------- requests


@pytest.mark.parametrize(
    ("request_", "data"),
    [
        (CheckRequest(BOB), {"email": BOB}),
        (RequestPublicKeyRequest(BOB), {"email": BOB}),
        (ReceiveRequest(BOB), {"email": BOB}),
        (ReceiveRequest(BOB, since="s4", limit=7), {"email": BOB, "since": "s4", "limit": 7}),
        (DeleteRequest(BOB, [ID]), {"email": BOB, "messageIds": [ID]}),
        (RegisterKeyRequest(BOB, "KEY"), {"email": BOB, "publicKey": "KEY"}),
        (AuthRequest(BOB, "SIG"), {"email": BOB, "signature": "SIG"}),
        (SendRequest({"meta": {}}), {"packet": {"meta": {}}}),
    ],
)
def test_a_request_builds_the_data_object_of_the_spec(request_, data):
    assert request_.to_data() == data
    assert type(request_).ACTION in ACTIONS


@pytest.mark.parametrize("request_type", [r for r in REQUESTS if r is not SendRequest])
def test_every_address_is_lowercased_and_a_missing_one_is_bad_request(request_type):
    data = {
        "email": "(Bob)%(LocalHost)",
        "messageIds": [],
        "publicKey": "KEY",
        "signature": "SIG",
    }
    assert request_type.from_data(data).email == BOB
    missing = refused(request_type.from_data, {})
    assert (missing.code, missing.message) == (errors.BAD_REQUEST, "data.email is missing")
    assert refused(request_type.from_data, {"email": 5}).code == errors.INVALID_ADDRESS
    assert refused(request_type.from_data, {"email": "bob@x.org"}).code == errors.INVALID_ADDRESS


def test_receive_limit_defaults_to_100_and_is_at_most_1000():
    assert ReceiveRequest.from_data({"email": BOB}).page_size == limits.DEFAULT_RECEIVE_LIMIT
    assert ReceiveRequest.from_data({"email": BOB, "limit": 1000}).limit == 1000
    assert ReceiveRequest(BOB).page_size == 100
    for bad in (0, -1, 1001, True, 5.0, "5", None):
        error = refused(ReceiveRequest.from_data, {"email": BOB, "limit": bad})
        assert (error.code, error.message) == (
            errors.BAD_REQUEST,
            "limit must be an integer from 1 to 1000",
        )


def test_receive_since_must_be_a_string_cursor():
    assert ReceiveRequest.from_data({"email": BOB, "since": None}).since is None
    assert ReceiveRequest.from_data({"email": BOB, "since": "s9"}).since == "s9"
    error = refused(ReceiveRequest.from_data, {"email": BOB, "since": 9})
    assert error.message == "since must be a cursor returned by an earlier RECEIVE"


def test_delete_takes_at_most_1000_well_formed_ids():
    assert (
        DeleteRequest.from_data({"email": BOB, "messageIds": [ID] * 1000}).message_ids
        == [ID] * 1000
    )
    for bad in (None, "x", {"a": ID}, [ID] * 1001):
        error = refused(DeleteRequest.from_data, {"email": BOB, "messageIds": bad})
        assert (error.code, error.message) == (
            errors.BAD_REQUEST,
            "messageIds must be a list of at most 1000 ids",
        )
    for bad in ([ID.upper()], [ID[:-1]], [5], [None]):
        error = refused(DeleteRequest.from_data, {"email": BOB, "messageIds": bad})
        assert error.message == "every messageId must be 32 lowercase hex"


def test_register_key_refuses_a_key_that_is_not_a_string_or_too_long():
    for bad in (None, 5, ["KEY"]):
        error = refused(RegisterKeyRequest.from_data, {"email": BOB, "publicKey": bad})
        assert (error.code, error.message) == (
            errors.KEY_INVALID,
            "publicKey must be an ASCII-armored OpenPGP key",
        )
    # SPEC §5 resource limits: a key over 16 KiB of armor is refused before it is parsed.
    big = "x" * (limits.MAX_KEY_ARMOR_CHARS + 1)
    error = refused(RegisterKeyRequest.from_data, {"email": BOB, "publicKey": big})
    assert error.code == errors.KEY_INVALID
    assert "over 16 KiB" in error.message


def test_auth_refuses_a_signature_that_is_not_a_string_or_too_long():
    for bad in (None, 5, "x" * (MAX_SIGNATURE_CHARS + 1)):
        error = refused(AuthRequest.from_data, {"email": BOB, "signature": bad})
        assert error.code == errors.BAD_REQUEST
        assert error.message.startswith("data.signature must be an ASCII-armored")


def test_send_leaves_the_packet_to_the_packet_rules():
    assert SendRequest.from_data({}).packet is None
    assert SendRequest.from_data({"packet": "x"}).packet == "x"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
DATA = st.dictionaries(
    st.sampled_from(["email", "since", "limit", "messageIds", "publicKey", "signature", "x"]),
    JSON | st.just(BOB) | st.just([ID]),
)


@settings(max_examples=300, deadline=None)
@given(request_type=st.sampled_from(REQUESTS), data=DATA)
def test_any_data_parses_or_is_refused_with_a_spec_code(request_type, data):
    try:
        request = request_type.from_data(data)
    except MMTPError as exc:
        assert exc.code in errors.ALL_CODES
    else:
        assert type(request).from_data(request.to_data()) == request


# ---------------------------------------------------------------------------- answers


@pytest.mark.parametrize(
    ("answer", "keys"),
    [
        (CheckAnswer(3), ["status", "count"]),
        (DeleteAnswer(1), ["status", "deleted"]),
        (
            ReceiveAnswer([{"meta": {}}], 1, False, "s1"),
            ["status", "messages", "count", "more", "cursor"],
        ),
        (RegisterKeyAnswer("FP", "Public key registered"), ["status", "message", "fingerprint"]),
        (
            RequestPublicKeyAnswer(BOB, "KEY", "FP"),
            ["status", "email", "publicKey", "fingerprint"],
        ),
        (AuthAnswer(BOB, "Authenticated"), ["status", "message", "email"]),
        (
            SendAnswer(ID, True, True, False, message="Message delivered successfully"),
            [
                "status",
                "message",
                "duplicate",
                "messageId",
                "encrypted",
                "signed",
                "signatureVerified",
            ],
        ),
    ],
)
def test_an_answer_is_built_in_the_servers_order_and_reads_back_equal(answer, keys):
    response = answer.to_response()
    assert list(response) == keys
    assert response["status"] == "OK"
    assert type(answer).from_response(response) == answer


@pytest.mark.parametrize("answer_type", ANSWERS)
def test_an_empty_answer_is_not_mmtp(answer_type):
    with pytest.raises(LocalError, match="is not MMTP"):
        answer_type.from_response({"status": "OK"})


def test_unknown_keys_in_an_answer_are_ignored():
    response = {"status": "OK", "id": 4, "count": 2, "later": {"x": [1]}}
    assert CheckAnswer.from_response(response) == CheckAnswer(2)


@pytest.mark.parametrize(
    ("answer_type", "response", "key"),
    [
        (CheckAnswer, {"count": "2"}, "count"),
        (CheckAnswer, {"count": True}, "count"),
        (DeleteAnswer, {"deleted": 1.5}, "deleted"),
        (ReceiveAnswer, {"messages": [1], "count": 1, "more": False, "cursor": "s"}, "messages"),
        (ReceiveAnswer, {"messages": [], "count": 0, "more": 0, "cursor": "s"}, "more"),
        (ReceiveAnswer, {"messages": [], "count": 0, "more": False, "cursor": 1}, "cursor"),
        (AuthAnswer, {"email": None}, "email"),
        (RequestPublicKeyAnswer, {"email": BOB, "publicKey": "K"}, "fingerprint"),
        (
            RequestPublicKeyAnswer,
            {"email": BOB, "publicKey": "K", "fingerprint": "F", "remote": "yes"},
            "remote",
        ),
        (
            SendAnswer,
            {"messageId": ID, "encrypted": True, "signed": True, "signatureVerified": "no"},
            "signatureVerified",
        ),
    ],
)
def test_an_ill_typed_answer_field_is_not_mmtp(answer_type, response, key):
    with pytest.raises(LocalError, match=f"{key!r} must be"):
        answer_type.from_response({"status": "OK", **response})


def test_revision_2_fields_appear_only_when_set():
    assert "remote" not in RequestPublicKeyAnswer(BOB, "K", "F").to_response()
    assert RequestPublicKeyAnswer(BOB, "K", "F", remote=True).to_response()["remote"] is True
    assert "queued" not in SendAnswer(ID, False, False, False).to_response()
    queued = SendAnswer(ID, False, False, False, queued=True)
    assert SendAnswer.from_response(queued.to_response()).queued is True
    # A revision-1 server says nothing about duplicates on a first delivery either way.
    plain = {"messageId": ID, "encrypted": False, "signed": False, "signatureVerified": False}
    assert SendAnswer.from_response(plain).duplicate is False


def test_the_message_of_an_answer_is_optional():
    assert AuthAnswer.from_response({"status": "OK", "email": BOB}) == AuthAnswer(BOB, "")
    assert RegisterKeyAnswer.from_response({"fingerprint": "F", "message": 5}).message == ""


# ---------------------------------------------------------------------------- greeting


def test_the_servers_greeting_reads_back_to_the_same_frame(start_server):
    server = start_server(domains=["localhost", "example.com"], difficulty=9)
    connection = Connection(*server.plain_address, tls=False, timeout=10)
    connection.close()
    frame, greeting = connection.greeting, connection.greeting_info
    assert greeting == Greeting.from_response(frame)
    assert greeting.difficulty == 9 and greeting.tls is False
    assert greeting.domains == ["example.com", "localhost"]
    assert greeting.features == Features(
        plain_auth=False, pipelining=True, relay=False, max_receive_limit=1000
    )
    built = greeting.to_response()
    assert built == frame
    assert list(built) == list(frame)


def test_a_minimal_greeting_takes_the_fallbacks():
    greeting = Greeting.from_response({"status": "OK", "server": "s/1", "nonce": "n"})
    assert greeting.difficulty == limits.DEFAULT_DIFFICULTY
    assert greeting.domains == [] and greeting.max_frame_bytes is None
    assert greeting.features.max_receive_limit == limits.MAX_RECEIVE_LIMIT
    assert greeting.features.pipelining is False
