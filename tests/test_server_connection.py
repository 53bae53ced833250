"""Protocol rules against the sans-I/O server connection: bytes in, frames out, no sockets.

`Turns` plays the server loop's part: it answers what each connection has buffered (running
the OpenPGP jobs a request waits for in this thread, where the loop hands them to its worker
processes), commits once, then hands out the bytes, as `server_loop.ServerLoop` does for real
sockets.
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from configs import make_config
from helpers import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    auth_signature,
    error_code,
    make_packet,
    public_armored,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmtp_proto.deferred import run_inline
from mmtp_proto.framing import encode_frame
from mmtp_proto.protocol import ACTIONS, Protocol
from mmtp_proto.server_connection import ServerConnection
from mmtp_proto.store import Store, StoreError

MAX_FRAME = 4096


class Turns:
    """One protocol over one store, and the loop's turn: process, commit, release."""

    def __init__(self, data_dir: Path, **overrides: Any) -> None:
        config = make_config(data_dir, max_frame_bytes=MAX_FRAME, **overrides)
        self.store = Store(data_dir / "mmtp.db", fsync=False)
        self.protocol = Protocol(config, self.store)

    def connect(self, *, tls: bool = True, refused: str | None = None) -> ServerConnection:
        conn = ServerConnection(self.protocol, peer="192.0.2.7", tls=tls, refused=refused)
        conn.start()
        return conn

    def turn(self, *conns: ServerConnection, max_lines: int = 64) -> list[list[dict[str, Any]]]:
        for conn in conns:
            self.process(conn, max_lines)
        self.protocol.commit()
        return [frames(conn.data_to_send()) for conn in conns]

    def process(self, conn: ServerConnection, max_lines: int = 64) -> None:
        """The connection's part of a turn, the jobs its requests wait for included."""
        conn.process(max_lines, 1 << 30)
        while (job := conn.take_job()) is not None:
            conn.deliver(run_inline(job))
            conn.process(max_lines, 1 << 30)

    def exchange(self, conn: ServerConnection, *requests: dict[str, Any]) -> list[dict[str, Any]]:
        conn.receive_data(b"".join(encode_frame(r) for r in requests))
        return self.turn(conn)[0]


def frames(data: bytes) -> list[dict[str, Any]]:
    assert data == b"" or data.endswith(b"\n"), data
    return [json.loads(line) for line in data.split(b"\n")[:-1]]


def request(action: str, request_id: Any = None, **data: Any) -> dict[str, Any]:
    return {"action": action, "id": request_id, "data": data}


def code(answer: dict[str, Any]) -> str:
    return "OK" if answer["status"] == "OK" else answer["error"]["code"]


@pytest.fixture
def turns(tmp_path: Path) -> Iterator[Turns]:
    t = Turns(tmp_path)
    yield t
    t.store.close()


def greeted(turns: Turns, **kw: Any) -> tuple[ServerConnection, dict[str, Any]]:
    conn = turns.connect(**kw)
    (greeting,) = frames(conn.data_to_send())
    return conn, greeting


class MemoryWire:
    """`wire.Wire`'s reading and writing calls over a ServerConnection: each write is one
    turn of the loop, whose answers are then read in order."""

    def __init__(self, turns: Turns, *, tls: bool = True) -> None:
        self.turns = turns
        self.conn = turns.connect(tls=tls)
        self._answers = deque(frames(self.conn.data_to_send()))
        self.greeting = self._answers.popleft()
        self._ids = 0

    def __enter__(self) -> MemoryWire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.receive_data(b"")

    def send_bytes(self, data: bytes) -> None:
        self.conn.receive_data(data)
        while self.conn.pending_requests:
            self._answers.extend(self.turns.turn(self.conn)[0])

    def send_frame(self, value: Any) -> None:
        self.send_bytes(encode_frame(value))

    def read(self) -> dict[str, Any]:
        return self._answers.popleft()

    def request(self, action: str, data: dict[str, Any] | None = None, **extra: Any):
        self._ids += 1
        request_id = extra.pop("id") if "id" in extra else self._ids
        self.send_frame({"action": action, "id": request_id, "data": data or {}, **extra})
        answer = self.read()
        assert answer.get("id") == request_id, (action, request_id, answer)
        return answer


def register(turns: Turns, email: str = BOB) -> None:
    conn, _ = greeted(turns)
    (answer,) = turns.exchange(
        conn, request("REGISTER_KEY", 1, email=email, publicKey=public_armored(email))
    )
    assert code(answer) == "OK", answer


def authed(turns: Turns, email: str = DAVE) -> ServerConnection:
    """A connection authenticated as `email` (its key registered first): it may SEND as
    `email` (the sender rule of SPEC §3)."""
    register(turns, email)
    conn, greeting = greeted(turns)
    signature = auth_signature(greeting, email)
    (answer,) = turns.exchange(conn, request("AUTH", 0, email=email, signature=signature))
    assert code(answer) == "OK", answer
    return conn


# ---------------------------------------------------------------------------- greeting


@pytest.mark.parametrize("tls", [True, False])
def test_the_greeting_comes_first_and_describes_this_server(turns, tls):
    conn, greeting = greeted(turns, tls=tls)
    assert greeting["status"] == "OK" and greeting["protocol"] == "MMTP/1"
    assert greeting["tls"] is tls
    assert greeting["maxFrameBytes"] == MAX_FRAME
    assert greeting["actions"] == list(ACTIONS)
    assert greeting["features"]["pipelining"] is True
    assert len(greeting["nonce"]) == 32 and greeting["nonce"] == conn.session.nonce
    assert not conn.closing
    assert conn.data_to_send() == b""


def test_every_connection_gets_its_own_nonce(turns):
    nonces = {greeted(turns)[1]["nonce"] for _ in range(50)}
    assert len(nonces) == 50


@pytest.mark.parametrize("why", ["on this server", "from your address"])
def test_a_refused_connection_is_told_why_then_closed(turns, why):
    conn, answer = greeted(turns, refused=why)
    assert code(answer) == "TOO_MANY_CONNECTIONS" and why in answer["error"]["message"]
    assert conn.closing and conn.finished
    conn.receive_data(encode_frame(request("CHECK", 1)))  # ignored: it is closing
    assert conn.pending_requests == 0


# ---------------------------------------------------------------------------- envelope


@pytest.mark.parametrize(
    "request_id",
    [None, 0, 7, -3, "abc", "", {"a": [1, {"b": None}]}, [1, "two"], True, "ünï"],
    ids=repr,
)
def test_id_is_echoed_on_ok_and_error(turns, request_id):
    register(turns, ALICE)
    with MemoryWire(turns) as wire:
        ok = wire.request("REQUEST_PUBLIC_KEY", {"email": ALICE}, id=request_id)
        assert ok["status"] == "OK"
        assert ok["id"] == request_id
        err = wire.request("REQUEST_PUBLIC_KEY", {"email": CAROL}, id=request_id)
        assert error_code(err) == "KEY_NOT_FOUND"
        assert err["id"] == request_id
        unknown = wire.request("NOPE", id=request_id)
        assert error_code(unknown) == "UNKNOWN_ACTION"
        assert unknown["id"] == request_id


def test_no_id_key_when_the_request_had_none(turns):
    register(turns, ALICE)
    with MemoryWire(turns) as wire:
        wire.send_frame({"action": "REQUEST_PUBLIC_KEY", "data": {"email": ALICE}})
        ok = wire.read()
        wire.send_frame({"action": "REQUEST_PUBLIC_KEY", "data": {"email": CAROL}})
        err = wire.read()
        wire.send_frame({"action": "FROB"})
        unknown = wire.read()
    assert ok["status"] == "OK" and "id" not in ok
    assert error_code(err) == "KEY_NOT_FOUND" and "id" not in err
    assert error_code(unknown) == "UNKNOWN_ACTION" and "id" not in unknown


def test_data_may_be_omitted(turns):
    with MemoryWire(turns) as wire:
        wire.send_frame({"action": "CHECK", "id": 1})
        answer = wire.read()
    # No data means an empty object: the email is missing, not the envelope broken.
    assert error_code(answer) == "BAD_REQUEST"
    assert "email" in answer["message"]


@pytest.mark.parametrize(
    "line",
    [
        b"\xff\xfe{}",
        b'{"action": "CHECK", "data": {"email": "\xc3"}}',
        b'{"action": "CHECK", "id": NaN}',
        b'{"action": "CHECK", "id": Infinity}',
        b'{"action": "CHECK", "id": -Infinity}',
        b"garbage",
        b'{"action": "CHECK"',
        b'{"action": "CHECK", "action": "SEND"}',
        b"{'action': 'CHECK'}",
    ],
    ids=[
        "invalid-utf8",
        "truncated-utf8",
        "nan",
        "infinity",
        "minus-infinity",
        "garbage",
        "unterminated",
        "duplicate-key",
        "single-quotes",
    ],
)
def test_unparseable_bytes_get_bad_json_and_the_connection_stays_usable(turns, line):
    register(turns, ALICE)
    with MemoryWire(turns) as wire:
        wire.send_bytes(line + b"\n")
        answer = wire.read()
        assert error_code(answer) == "BAD_JSON"
        assert "id" not in answer
        assert wire.request("REQUEST_PUBLIC_KEY", {"email": ALICE})["status"] == "OK"


@pytest.mark.parametrize(
    ("frame", "echoed_id"),
    [
        ([{"action": "CHECK"}], None),
        ("CHECK", None),
        (42, None),
        (None, None),
        ({"id": 5, "data": {}}, 5),
        ({"id": "x", "action": 7}, "x"),
        ({"id": 6, "action": None}, 6),
        ({"id": 8, "action": "CHECK", "data": []}, 8),
        ({"id": 9, "action": "CHECK", "data": "email"}, 9),
        ({"id": 10, "action": "CHECK", "data": None}, 10),
    ],
    ids=[
        "array",
        "string",
        "number",
        "null",
        "missing-action",
        "numeric-action",
        "null-action",
        "array-data",
        "string-data",
        "null-data",
    ],
)
def test_malformed_envelope_gets_bad_request_and_the_connection_stays_usable(
    turns, frame, echoed_id
):
    register(turns, ALICE)
    with MemoryWire(turns) as wire:
        wire.send_frame(frame)
        answer = wire.read()
        assert error_code(answer) == "BAD_REQUEST"
        if echoed_id is None:
            assert "id" not in answer
        else:
            assert answer["id"] == echoed_id
        assert wire.request("REQUEST_PUBLIC_KEY", {"email": ALICE})["status"] == "OK"


def test_blank_and_whitespace_lines_are_ignored(turns):
    register(turns, ALICE)
    with MemoryWire(turns) as wire:
        wire.send_bytes(b"\n\n\r\n   \n\t\n \r \t\r\n\r\r\n")
        first = wire.request("REQUEST_PUBLIC_KEY", {"email": ALICE}, id="first")
        wire.send_bytes(b"\r\n\n")
        # CRLF after a frame is fine too: JSON allows trailing white space.
        wire.send_bytes(b'{"action":"REQUEST_PUBLIC_KEY","id":"second","data":{"email":"x"}}\r\n')
        second = wire.read()
    assert first["status"] == "OK"
    assert second["id"] == "second"
    assert error_code(second) == "INVALID_ADDRESS"


def test_unknown_action_is_refused_by_name(turns):
    with MemoryWire(turns) as wire:
        for action in ("FROB", "send", "Receive", ""):
            answer = wire.request(action)
            assert error_code(answer) == "UNKNOWN_ACTION", action
        assert wire.request("CHECK", {"email": ALICE})["status"] == "ERROR"


def test_an_answer_to_a_request_without_id_has_no_id(turns):
    conn, _ = greeted(turns)
    (answer,) = turns.exchange(conn, {"action": "CHECK", "data": {}})
    assert "id" not in answer and code(answer) == "BAD_REQUEST"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"{not json", "BAD_JSON"),
        (b'{"action":"CHECK","action":"CHECK"}', "BAD_JSON"),
        (b"\xff\xfe", "BAD_JSON"),
        (b"[1,2]", "BAD_REQUEST"),
        (b'{"action":5}', "BAD_REQUEST"),
        (b'{"action":"CHECK","data":[]}', "BAD_REQUEST"),
        (b'{"action":"FLY"}', "UNKNOWN_ACTION"),
    ],
)
def test_a_bad_request_is_answered_and_the_connection_goes_on(turns, line, expected):
    register(turns)
    conn, _ = greeted(turns)
    conn.receive_data(line + b"\n" + encode_frame(request("REQUEST_PUBLIC_KEY", 2, email=BOB)))
    bad, good = turns.turn(conn)[0]
    assert code(bad) == expected
    assert code(good) == "OK" and good["id"] == 2
    assert not conn.closing


def test_pipelined_requests_are_answered_in_order(turns):
    register(turns)
    conn, _ = greeted(turns)
    requests = [
        request("REQUEST_PUBLIC_KEY" if n % 3 else "CHECK", n, email=BOB) for n in range(200)
    ]
    conn.receive_data(b"".join(encode_frame(r) for r in requests))
    answers: list[dict[str, Any]] = []
    while conn.pending_requests:
        answers += turns.turn(conn)[0]
    assert [a["id"] for a in answers] == list(range(200))
    assert [code(a) for a in answers] == ["OK" if n % 3 else "AUTH_REQUIRED" for n in range(200)]


def test_a_turn_answers_at_most_max_lines_and_stops_at_the_room_given(turns):
    conn, _ = greeted(turns)
    conn.receive_data(b"".join(encode_frame(request("CHECK", n)) for n in range(10)))
    assert len(turns.turn(conn, max_lines=4)[0]) == 4
    assert conn.pending_requests == 6
    conn.process(64, room=1)  # the first answer fills the room: the rest waits
    turns.protocol.commit()
    assert len(frames(conn.data_to_send())) == 1
    assert conn.pending_requests == 5


def test_blank_lines_get_no_answer(turns):
    conn, _ = greeted(turns)
    conn.receive_data(b"\n\r\n \t\r\n" + encode_frame(request("CHECK", 1)) + b"\n")
    assert [a["id"] for a in turns.turn(conn)[0]] == [1]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(
        st.one_of(
            st.builds(lambda n: encode_frame(request("CHECK", n))[:-1], st.integers(-99, 99)),
            st.builds(lambda n: encode_frame(request("FLY", n))[:-1], st.integers(-99, 99)),
            st.binary(max_size=40).filter(lambda b: b"\n" not in b and b.strip(b" \t\r")),
        ),
        max_size=20,
    ),
    cuts=st.lists(st.integers(0, 2000), max_size=10),
)
def test_any_stream_cut_anywhere_gets_one_answer_per_line_in_order(turns, lines, cuts):
    stream = b"".join(line + b"\n" for line in lines)
    conn, _ = greeted(turns)
    points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    for start, end in itertools.pairwise(points):
        conn.receive_data(stream[start:end])
    answers = turns.turn(conn)[0]
    assert len(answers) == len(lines)
    for line, answer in zip(lines, answers, strict=True):
        try:
            sent = json.loads(line)
        except ValueError:
            sent = None
        if isinstance(sent, dict) and "id" in sent:
            assert answer["id"] == sent["id"]
        assert answer["status"] in ("OK", "ERROR")
    assert not conn.closing


# ---------------------------------------------------------------------------- frames, close


def test_a_frame_too_large_is_answered_after_the_ones_before_it_then_the_connection_closes(
    turns,
):
    conn, _ = greeted(turns)
    conn.receive_data(encode_frame(request("CHECK", 1)) + b"x" * (MAX_FRAME + 1))
    assert conn.closing and not conn.finished
    conn.receive_data(encode_frame(request("CHECK", 2)))  # after the break: never read
    first, too_large = turns.turn(conn)[0]
    assert first["id"] == 1
    assert code(too_large) == "FRAME_TOO_LARGE" and "id" not in too_large
    assert conn.finished


def test_a_shed_frame_is_dropped_after_the_requests_before_it_are_answered(turns):
    """The loop sheds the largest unfinished frame when the server's budget is spent."""
    conn, _ = greeted(turns)
    conn.receive_data(encode_frame(request("CHECK", 1)) + b'{"action":"CHECK","pad":"xxxx')
    assert conn.unfinished == len(b'{"action":"CHECK","pad":"xxxx')
    received = conn.received
    conn.shed()
    assert conn.unfinished == 0 and conn.closing and not conn.finished
    conn.receive_data(b'xx"}\n')  # after the shedding: never read
    assert conn.received == received
    first, shed = turns.turn(conn)[0]
    assert first["id"] == 1
    assert code(shed) == "FRAME_TOO_LARGE" and "again later" in shed["error"]["message"]
    assert conn.finished
    conn.shed()  # once closing, shedding again changes nothing
    assert conn.finished and turns.turn(conn)[0] == []


def test_a_complete_line_over_the_limit_is_too_large_too(turns):
    conn, _ = greeted(turns)
    conn.receive_data(b" " * (MAX_FRAME + 10) + b"\n")
    assert [code(a) for a in turns.turn(conn)[0]] == ["FRAME_TOO_LARGE"]
    assert conn.finished


def test_the_receive_room_never_lets_a_line_grow_past_the_limit(turns):
    conn, _ = greeted(turns)
    assert conn.receive_room == MAX_FRAME + 1
    conn.receive_data(b"{" * 1000)
    assert conn.receive_room == MAX_FRAME + 1 - 1000


def test_end_of_input_answers_what_was_sent_then_finishes(turns):
    conn, _ = greeted(turns)
    conn.receive_data(encode_frame(request("CHECK", 1)) + encode_frame(request("CHECK", 2)))
    conn.receive_data(b"")
    assert conn.closing and not conn.finished
    assert [a["id"] for a in turns.turn(conn)[0]] == [1, 2]
    assert conn.finished


# ---------------------------------------------------------------------------- commits


def test_a_durable_answer_is_held_until_the_commit(turns):
    conn, _ = greeted(turns)
    conn.receive_data(
        encode_frame(request("REGISTER_KEY", 1, email=BOB, publicKey=public_armored(BOB)))
    )
    turns.process(conn)
    assert turns.protocol.commits.pending
    assert conn.data_to_send() == b""  # nothing leaves while its write is uncommitted
    assert not conn.finished
    turns.protocol.commit()
    (answer,) = frames(conn.data_to_send())
    assert code(answer) == "OK" and answer["id"] == 1


def test_answers_of_one_turn_on_several_connections_share_one_commit(turns):
    register(turns)
    conns = [authed(turns) for _ in range(5)]
    for n, conn in enumerate(conns):
        conn.receive_data(encode_frame(request("SEND", n, packet=make_packet(DAVE, BOB))))
        conn.process(64, 1 << 30)
    rollbacks = turns.store.rollbacks
    assert all(conn.data_to_send() == b"" for conn in conns)
    turns.protocol.commit()
    for n, conn in enumerate(conns):
        (answer,) = frames(conn.data_to_send())
        assert code(answer) == "OK" and answer["id"] == n and answer["duplicate"] is False
    assert turns.store.rollbacks == rollbacks
    assert turns.store.count_messages(BOB) == 5


def _fail_next_commit(store: Store) -> None:
    real_commit = store.commit
    armed = [True]

    def commit() -> None:
        if armed and store.pending:
            armed.clear()
            store.rollback()
            raise StoreError("disk I/O error (simulated)")
        real_commit()

    store.commit = commit  # type: ignore[method-assign]


def test_a_failed_commit_withdraws_every_answer_it_promised_and_only_those(turns):
    register(turns)
    sender, other = authed(turns), authed(turns)
    sender.receive_data(
        encode_frame(request("SEND", "a", packet=make_packet(DAVE, BOB)))
        + encode_frame(request("SEND", "b", packet=make_packet(DAVE, BOB)))
        + b'{"id": "c", bad json\n'
    )
    other.receive_data(encode_frame(request("SEND", "d", packet=make_packet(DAVE, BOB))))
    _fail_next_commit(turns.store)
    first, second = turns.turn(sender, other)
    assert [(a.get("id"), code(a)) for a in first] == [
        ("a", "INTERNAL"),
        ("b", "INTERNAL"),
        (None, "BAD_JSON"),  # not a promise: it stands
    ]
    assert [(a["id"], code(a)) for a in second] == [("d", "INTERNAL")]
    assert "storage" in first[0]["error"]["message"]
    assert turns.store.count_messages(BOB) == 0
    # The next turn commits as usual.
    assert (
        code(turns.exchange(other, request("SEND", "e", packet=make_packet(DAVE, BOB)))[0]) == "OK"
    )
    assert turns.store.count_messages(BOB) == 1


def test_a_storage_error_in_a_later_request_withdraws_the_earlier_answers_of_its_turn(
    turns, monkeypatch
):
    register(turns)
    conn = authed(turns)
    real_add = turns.store.stage_message
    calls = []

    def stage_message(**kw: Any) -> Any:
        calls.append(kw)
        if len(calls) == 2:
            raise StoreError("database or disk is full (simulated)")
        return real_add(**kw)

    monkeypatch.setattr(turns.store, "stage_message", stage_message)
    answers = turns.exchange(
        conn,
        *(request("SEND", n, packet=make_packet(DAVE, BOB)) for n in range(3)),
    )
    # The first was staged, then rolled back with the second's failure; the third starts a
    # new transaction and is committed.
    assert [(a["id"], code(a)) for a in answers] == [(0, "INTERNAL"), (1, "INTERNAL"), (2, "OK")]
    assert turns.store.count_messages(BOB) == 1


def test_a_read_after_a_write_in_the_same_turn_sees_only_committed_data(turns):
    register(turns)
    conn, greeting = greeted(turns)
    signature = auth_signature(greeting, BOB)
    packet = make_packet(BOB, BOB)
    answers = turns.exchange(
        conn,
        request("AUTH", 1, email=BOB, signature=signature),
        request("SEND", 2, packet=packet),
        request("CHECK", 3, email=BOB),
        request("SEND", 4, packet=packet),
    )
    assert [code(a) for a in answers] == ["OK", "OK", "OK", "OK"]
    assert answers[2]["count"] == 1  # CHECK committed the SEND before it counted
    assert answers[3]["duplicate"] is True


def test_auth_over_a_plain_connection_is_refused_unless_allowed(turns):
    register(turns)
    conn, greeting = greeted(turns, tls=False)
    (answer,) = turns.exchange(
        conn, request("AUTH", 1, email=BOB, signature=auth_signature(greeting, BOB))
    )
    assert code(answer) == "TLS_REQUIRED"


# ---------------------------------------------------------------------------- deferred answers


def test_a_waiting_request_holds_the_ones_after_it_and_nothing_else(turns):
    register(turns, BOB)
    waiting, greeting = greeted(turns)
    other, _ = greeted(turns)
    waiting.receive_data(
        encode_frame(request("AUTH", 1, email=BOB, signature=auth_signature(greeting, BOB)))
        + encode_frame(request("CHECK", 2, email=BOB))
    )
    waiting.process(64, 1 << 30)
    job = waiting.take_job()
    assert job is not None and waiting.waiting and not waiting.can_process
    assert waiting.take_job() is None  # handed out once
    # Another connection is answered meanwhile; the waiting one says nothing yet.
    (answer,) = turns.exchange(other, request("REQUEST_PUBLIC_KEY", 7, email=BOB))
    assert code(answer) == "OK"
    waiting.process(64, 1 << 30)
    assert waiting.data_to_send() == b"" and waiting.pending_requests == 1
    waiting.deliver(run_inline(job))
    assert waiting.can_process
    answers = turns.turn(waiting)[0]
    assert [(a["id"], code(a)) for a in answers] == [(1, "OK"), (2, "OK")]


def test_a_job_over_a_key_replaced_meanwhile_runs_again_against_the_new_key(turns):
    from mmtp_proto import pgp

    register(turns, BOB)
    stale, greeting = greeted(turns)
    stale.receive_data(
        encode_frame(request("AUTH", 1, email=BOB, signature=auth_signature(greeting, BOB)))
    )
    stale.process(64, 1 << 30)
    old_job = stale.take_job()
    assert old_job is not None
    # Meanwhile the owner replaces the key from another connection.
    new_key = pgp.generate_key(BOB, "Bob", algorithm="ed25519")
    owner, owner_greeting = greeted(turns)
    answers = turns.exchange(
        owner,
        request("AUTH", 1, email=BOB, signature=auth_signature(owner_greeting, BOB)),
        request("REGISTER_KEY", 2, email=BOB, publicKey=new_key.public.armored),
    )
    assert [code(a) for a in answers] == ["OK", "OK"]
    # The old job says the signature verifies against the old key: that no longer counts.
    stale.deliver(run_inline(old_job))
    stale.process(64, 1 << 30)
    assert stale.waiting and stale.data_to_send() == b""
    (answer,) = turns.turn(stale)[0]
    assert code(answer) == "AUTH_FAILED"
    assert stale.session.authenticated is None
