"""The sans-I/O client connection (SPEC §1), driven in memory: bytes in, events out.

No sockets: each test plays the server by feeding frames it writes by hand, so late, garbled,
oversized and unasked-for answers are as easy to make as good ones.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmtp_proto import errors
from mmtp_proto.actions import CheckAnswer, CheckRequest, ReceiveRequest
from mmtp_proto.client_connection import (
    NEED_DATA,
    Answer,
    ClientConnection,
    Closed,
    ConnectionBroken,
    Greeted,
    State,
)
from mmtp_proto.errors import LocalError, MMTPError
from mmtp_proto.limits import DEFAULT_DIFFICULTY

BOB = "(bob)%(localhost)"
GREETING: dict[str, Any] = {
    "status": "OK",
    "message": "MMTP Server Ready",
    "protocol": "MMTP/1",
    "server": "mmtp-server/0.1.0",
    "domains": ["localhost"],
    "difficulty": 12,
    "maxFrameBytes": 4096,
    "stampValiditySeconds": 3600,
    "nonce": "ab" * 16,
    "tls": True,
    "features": {"plainAuth": False, "pipelining": True, "relay": False},
    "actions": ["SEND", "CHECK"],
}


def frame(value: Any) -> bytes:
    return json.dumps(value).encode() + b"\n"


def ok(request_id: Any, **fields: Any) -> bytes:
    return frame({"status": "OK", "id": request_id, **fields})


def error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"status": "ERROR", "error": {"code": code, "message": message}, **extra}


def events(conn: ClientConnection) -> list[Any]:
    """Every event available now, up to NEED_DATA or Closed."""
    found = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            return found
        found.append(event)
        if isinstance(event, Closed):
            return found


def greeted(**kwargs: Any) -> ClientConnection:
    conn = ClientConnection("test:1", **kwargs)
    conn.receive_data(frame(GREETING))
    (event,) = events(conn)
    assert isinstance(event, Greeted)
    return conn


def sent_frames(conn: ClientConnection) -> list[dict[str, Any]]:
    data = conn.data_to_send()
    assert data.endswith(b"\n")
    return [json.loads(line) for line in data.splitlines()]


# ---------------------------------------------------------------------------- greeting


def test_the_greeting_is_the_first_event_and_is_typed():
    conn = ClientConnection("test:1")
    assert conn.state is State.AWAITING_GREETING
    assert conn.next_event() is NEED_DATA
    conn.receive_data(frame(GREETING))
    event = conn.next_event()
    assert isinstance(event, Greeted)
    assert event.frame == GREETING
    assert event.greeting.server == "mmtp-server/0.1.0"
    assert event.greeting.nonce == "ab" * 16
    assert event.greeting.difficulty == 12
    assert event.greeting.features.pipelining is True
    assert conn.greeting == event.greeting and conn.greeting_frame == GREETING
    assert conn.state is State.OPEN
    assert conn.next_event() is NEED_DATA


def test_a_greeting_fed_one_byte_at_a_time_arrives_whole():
    conn = ClientConnection()
    data = frame(GREETING)
    for i in range(len(data) - 1):
        conn.receive_data(data[i : i + 1])
        assert conn.next_event() is NEED_DATA
    conn.receive_data(data[-1:])
    assert isinstance(conn.next_event(), Greeted)


def test_a_greeting_without_difficulty_falls_back_to_the_default():
    conn = ClientConnection()
    conn.receive_data(frame({k: v for k, v in GREETING.items() if k != "difficulty"}))
    event = conn.next_event()
    assert isinstance(event, Greeted)
    assert event.greeting.difficulty == DEFAULT_DIFFICULTY


def test_unknown_keys_in_the_greeting_and_features_are_ignored():
    grown = {**GREETING, "future": {"x": 1}, "features": {"relay": True, "teleport": "yes"}}
    conn = ClientConnection()
    conn.receive_data(frame(grown))
    event = conn.next_event()
    assert isinstance(event, Greeted)
    assert event.greeting.features.relay is True
    assert event.frame["future"] == {"x": 1}  # the frame keeps what the type leaves out


def test_a_refusal_instead_of_a_greeting_is_the_servers_error_and_closes():
    conn = ClientConnection()
    conn.receive_data(frame(error(errors.TOO_MANY_CONNECTIONS, "too many connections")))
    with pytest.raises(MMTPError) as caught:
        conn.next_event()
    assert caught.value.code == errors.TOO_MANY_CONNECTIONS
    assert conn.closed
    with pytest.raises(MMTPError):
        conn.next_event()


@pytest.mark.parametrize(
    "greeting",
    [
        {k: v for k, v in GREETING.items() if k != "nonce"},
        {**GREETING, "server": 5},
        {**GREETING, "difficulty": "20"},
        {**GREETING, "difficulty": True},
        {**GREETING, "domains": "localhost"},
        {**GREETING, "features": []},
    ],
)
def test_a_greeting_that_is_not_mmtp_breaks_the_connection(greeting):
    conn = ClientConnection("test:1")
    conn.receive_data(frame(greeting))
    with pytest.raises(ConnectionBroken, match="test:1 sent something that is not MMTP"):
        conn.next_event()
    assert conn.closed


def test_the_server_closing_before_its_greeting_breaks_the_connection():
    conn = ClientConnection("test:1")
    conn.receive_data(b"")
    with pytest.raises(ConnectionBroken, match="test:1 closed the connection"):
        conn.next_event()


# ---------------------------------------------------------------------------- requests out


def test_requests_get_ids_one_two_three_and_leave_as_frames():
    conn = greeted()
    assert conn.send_request("CHECK", {"email": BOB}) == 1
    assert conn.send(ReceiveRequest(BOB, limit=5)) == 2
    assert conn.send_request("REQUEST_PUBLIC_KEY") == 3
    assert sent_frames(conn) == [
        {"action": "CHECK", "id": 1, "data": {"email": BOB}},
        {"action": "RECEIVE", "id": 2, "data": {"email": BOB, "limit": 5}},
        {"action": "REQUEST_PUBLIC_KEY", "id": 3, "data": {}},
    ]
    assert conn.data_to_send() == b""
    assert conn.pending == ((1, "CHECK"), (2, "RECEIVE"), (3, "REQUEST_PUBLIC_KEY"))


def test_requests_may_be_queued_before_the_greeting_arrives():
    conn = ClientConnection()
    conn.send(CheckRequest(BOB))
    assert sent_frames(conn) == [{"action": "CHECK", "id": 1, "data": {"email": BOB}}]
    conn.receive_data(frame(GREETING) + ok(1, count=4))
    greeting, answer = events(conn)
    assert isinstance(greeting, Greeted)
    assert isinstance(answer, Answer) and answer.request_id == 1
    assert CheckAnswer.from_response(answer.frame).count == 4


def test_frames_are_utf8_json_lines_with_no_raw_newline():
    conn = greeted()
    conn.send_request("CHECK", {"email": "é\nü"})
    data = conn.data_to_send()
    assert data.count(b"\n") == 1 and "é".encode() in data


# ---------------------------------------------------------------------------- answers in


def test_pipelined_answers_come_back_in_order_with_their_requests():
    conn = greeted()
    ids = [conn.send_request("CHECK", {"email": BOB}) for _ in range(3)]
    conn.data_to_send()
    conn.receive_data(ok(1, count=0) + frame({**error(errors.AUTH_REQUIRED, "auth"), "id": 2}))
    first, second = events(conn)
    assert (first.request_id, first.action, first.ok) == (1, "CHECK", True)
    assert (second.request_id, second.ok) == (2, False)
    assert second.error().code == errors.AUTH_REQUIRED
    assert conn.pending == ((3, "CHECK"),)
    conn.receive_data(ok(3, count=7)[:5])
    assert conn.next_event() is NEED_DATA
    conn.receive_data(ok(3, count=7)[5:])
    (third,) = events(conn)
    assert third.request_id == ids[2] and third.frame["count"] == 7
    assert conn.pending == ()


def test_an_error_without_id_answers_the_oldest_request():
    """FRAME_TOO_LARGE: the server could not read the request, so it could not echo its id."""
    conn = greeted()
    conn.send_request("SEND", {"packet": "x" * 10})
    conn.receive_data(frame(error(errors.FRAME_TOO_LARGE, "frame exceeds the limit")))
    (answer,) = events(conn)
    assert answer.request_id == 1 and answer.error().code == errors.FRAME_TOO_LARGE


@pytest.mark.parametrize(
    "answer",
    [
        ok(2, count=1),  # the id of a later request
        ok(0, count=1),  # a late answer to an earlier one
        ok(True, count=1),  # true == 1 in Python, not in JSON
        ok(1.0, count=1),
        ok("1", count=1),
        ok(None, count=1),
        frame({"status": "OK", "count": 1}),  # an OK answer must echo the id
    ],
)
def test_an_answer_with_the_wrong_id_breaks_the_connection(answer):
    conn = greeted()
    conn.send_request("CHECK", {"email": BOB})
    conn.send_request("CHECK", {"email": BOB})
    conn.receive_data(answer)
    with pytest.raises(ConnectionBroken, match="answered out of order"):
        conn.next_event()
    assert conn.closed and conn.pending == ()
    # Broken stays broken: nothing later is taken for an answer.
    conn.receive_data(ok(1, count=1))
    with pytest.raises(ConnectionBroken):
        conn.next_event()
    with pytest.raises(LocalError, match="closed; connect again"):
        conn.send_request("CHECK", {"email": BOB})


def test_an_answer_nobody_asked_for_breaks_the_connection():
    conn = greeted()
    conn.receive_data(ok(1, count=1))
    with pytest.raises(ConnectionBroken, match="answered out of order"):
        conn.next_event()


@pytest.mark.parametrize(
    "garbage",
    [
        b"not json\n",
        b"\xff\xfe{}\n",
        b"[1, 2]\n",
        b'"OK"\n',
        b'{"status": "OK", "id": 1, "count": NaN}\n',
        b'{"status": "OK", "id": 1, "id": 1}\n',
        b"[" * 100_000 + b"]" * 100_000 + b"\n",
    ],
)
def test_a_garbled_answer_breaks_the_connection(garbage):
    conn = greeted()
    conn.send_request("CHECK", {"email": BOB})
    conn.receive_data(garbage)
    with pytest.raises(ConnectionBroken, match="test:1 sent something that is not MMTP"):
        conn.next_event()
    assert conn.closed


def test_an_oversized_answer_breaks_the_connection_after_the_answers_before_it():
    conn = greeted(max_answer_bytes=1024)
    conn.send_request("CHECK", {"email": BOB})
    conn.send_request("CHECK", {"email": BOB})
    conn.receive_data(ok(1, count=1) + b'{"status":"OK","id":2,"pad":"' + b"x" * 2000)
    (first,) = [conn.next_event()]
    assert isinstance(first, Answer) and first.request_id == 1
    with pytest.raises(ConnectionBroken, match="test:1 sent an oversized answer"):
        conn.next_event()
    assert conn.closed


def test_blank_lines_between_answers_are_ignored():
    conn = greeted()
    conn.send_request("CHECK", {"email": BOB})
    conn.receive_data(b"\n \r\n" + ok(1, count=2) + b"\t\n")
    (answer,) = events(conn)
    assert answer.frame["count"] == 2


# ---------------------------------------------------------------------------- closing


def test_the_server_closing_with_nothing_pending_is_a_closed_event():
    conn = greeted()
    conn.receive_data(b"")
    assert isinstance(conn.next_event(), Closed)
    assert conn.closed
    with pytest.raises(LocalError, match="test:1 is closed; connect again"):
        conn.send_request("CHECK", {"email": BOB})


def test_the_server_closing_with_requests_pending_breaks_the_connection():
    conn = greeted()
    conn.send_request("CHECK", {"email": BOB})
    conn.send_request("CHECK", {"email": BOB})
    conn.receive_data(ok(1, count=0) + b"")
    conn.receive_data(b"")
    (answer,) = [conn.next_event()]
    assert answer.request_id == 1  # what arrived before the close is still delivered
    with pytest.raises(ConnectionBroken, match="test:1 closed the connection"):
        conn.next_event()


def test_closing_locally_drops_what_was_not_sent_and_refuses_more():
    conn = greeted()
    conn.send_request("CHECK", {"email": BOB})
    conn.close()
    assert conn.data_to_send() == b""
    assert isinstance(conn.next_event(), Closed)
    conn.receive_data(ok(1, count=0))  # ignored once closed
    assert isinstance(conn.next_event(), Closed)


# ---------------------------------------------------------------------------- any bytes


def _all_events(conn: ClientConnection) -> list[Any]:
    found: list[Any] = []
    while (event := conn.next_event()) is not NEED_DATA:
        found.append(event)
        if isinstance(event, Closed):
            break
    return found


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=400), max_size=8), st.integers(1, 6))
def test_how_the_bytes_are_split_never_changes_the_events(cuts, count):
    stream = frame(GREETING) + b"".join(ok(i, count=i) for i in range(1, count + 1)) + b"\n"
    whole = ClientConnection()
    for _ in range(count):
        whole.send_request("CHECK", {"email": BOB})
    whole.receive_data(stream)
    expected = _all_events(whole)
    chunked = ClientConnection()
    for _ in range(count):
        chunked.send_request("CHECK", {"email": BOB})
    found: list[Any] = []
    start = 0
    # b"" would mean the server closed, as in h11: only non-empty pieces are fed.
    for cut in [*sorted({c for c in cuts if 0 < c < len(stream)}), len(stream)]:
        chunked.receive_data(stream[start:cut])
        start = cut
        found.extend(_all_events(chunked))
    assert found == expected
    assert [e.request_id for e in found[1:]] == list(range(1, count + 1))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 3))
def test_any_bytes_give_events_or_a_broken_connection_never_anything_else(data, pending):
    conn = ClientConnection("test:1", max_answer_bytes=256)
    for _ in range(pending):
        conn.send_request("CHECK", {"email": BOB})
    conn.receive_data(data)
    conn.receive_data(b"")
    try:
        _all_events(conn)
    except (ConnectionBroken, MMTPError):
        assert conn.closed
