"""Thousands of mutated frames against a live server: it answers each one with a clean
error (never INTERNAL), keeps serving, and loses nothing it had stored."""

from __future__ import annotations

import json
import random
import socket
import threading
from typing import Any

import pytest

from mmtp_proto import hashcash, pgp
from mmtp_proto.client import Client
from mmtp_proto.errors import ALL_CODES, INTERNAL
from mmtp_proto.framing import encode_frame
from mmtp_proto.message import seal
from mmtp_proto.packet import clear_content

pytestmark = [pytest.mark.secure, pytest.mark.slow]

BOB = "(bob)%(example.com)"
FRAMES_PER_CONNECTION = 1000
CONNECTIONS = 5
SEED = 20261129


def _stamped(
    recipient: str, subject: str, bits: int, key: pgp.PrivateKey | None = None
) -> dict[str, Any]:
    """From bob to `recipient`: signed with bob's registered `key`, a fresh connection may send
    it (the sender rule of SPEC §3) and the fuzzed copies reach the signature check too."""
    packet = seal(
        sender=BOB, recipient=recipient, content=clear_content(subject, "body"), sign_with=key
    )
    packet["meta"]["hashcashToken"] = hashcash.mint(
        recipient, bits, packet["verification"]["messageHash"]
    )
    return packet


_WEIRD: list[Any] = [
    None,
    True,
    0,
    -1,
    10**40,
    1.5,
    "",
    "x" * 5000,
    "\u0000",
    "(a)%(b)",
    [],
    {},
    [[[]]],
    {"a": {"b": {"c": []}}},
]


def _weird_value(rng: random.Random) -> Any:
    return rng.choice(_WEIRD)


def _mutate_structure(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict) and value:
        key = rng.choice(list(value))
        choice = rng.random()
        copy = dict(value)
        if choice < 0.3:
            del copy[key]
        elif choice < 0.6:
            copy[key] = _weird_value(rng)
        else:
            copy[key] = _mutate_structure(copy[key], rng)
        return copy
    if isinstance(value, list) and value:
        copy = list(value)
        i = rng.randrange(len(copy))
        copy[i] = _mutate_structure(copy[i], rng)
        return copy
    return _weird_value(rng)


def _fuzz_frame(valid: dict[str, Any], rng: random.Random) -> bytes:
    kind = rng.randrange(9)
    text = encode_frame(valid)[:-1]
    if kind == 0:  # random bytes
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
    elif kind == 1:  # flipped bytes in a valid frame
        raw = bytearray(text)
        for _ in range(rng.randrange(1, 8)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        body = bytes(raw)
    elif kind == 2:  # truncated
        body = text[: rng.randrange(1, len(text))]
    elif kind == 3:  # structurally mutated, still JSON
        body = encode_frame(_mutate_structure(valid, rng))[:-1]
    elif kind == 4:  # deep nesting
        depth = rng.choice([100, 1000, 50_000])
        body = b"[" * depth + b"]" * rng.choice([0, depth])
    elif kind == 5:  # huge integers
        body = b'{"action":"CHECK","id":' + b"9" * rng.choice([30, 5000]) + b',"data":{}}'
    elif kind == 6:  # invalid UTF-8 and lone surrogates
        body = rng.choice(
            [
                b'{"action":"SEND","data":{"x":"\xff\xfe"}}',
                b'{"action":"CHECK","data":{"email":"\\ud800"}}',
                b'{"action":"\\udfff"}',
            ]
        )
    elif kind == 7:  # duplicate keys and wrong types everywhere
        body = rng.choice(
            [
                b'{"action":"CHECK","action":"SEND","data":{}}',
                b'{"action":1,"data":[]}',
                b'{"action":"RECEIVE","data":{"email":[1],"since":{},"limit":"9"}}',
                b'{"action":"DELETE","data":{"email":"(bob)%(example.com)","messageIds":7}}',
                b'{"action":"AUTH","data":{"email":"(bob)%(example.com)","signature":[]}}',
                b'{"action":"REGISTER_KEY","data":{"email":"(z)%(example.com)","publicKey":1}}',
                b"NaN",
                b'{"action":"SEND","data":{"packet":{"meta":1e400}}}',
            ]
        )
    else:  # a valid envelope with random action names and data
        body = encode_frame(
            {"action": rng.choice(["SEND", "send", "", "X" * 100]), "data": _weird_value(rng)}
        )[:-1]
    body = body.replace(b"\n", b" ")
    return body if body.strip(b" \t\r") else b"{}"


def _read_until(sock: socket.socket, sentinel_id: str, out: list[dict[str, Any]]) -> None:
    buffer = b""
    while True:
        data = sock.recv(65536)
        if not data:
            return
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            answer = json.loads(line)
            out.append(answer)
            if answer.get("id") == sentinel_id:
                return


def test_mutated_frames_get_clean_errors_and_lose_nothing(start_server, tmp_path) -> None:
    # Fuzzed AUTH frames fail by the hundred; the rate limiter is tested elsewhere.
    server = start_server(difficulty=4, failure_limit=1_000_000)
    bob_key = pgp.generate_key(BOB, "Bob", algorithm="ed25519")
    port = server.plain_address[1]
    client = Client(
        "127.0.0.1", port, server.tls_address[1], verify="insecure", keystore=tmp_path / "ks"
    )
    with client:
        client.register_key(BOB, bob_key.public.armored)
        stored = [
            client.send(_stamped(BOB, f"before {i}", 4, bob_key))["messageId"] for i in range(5)
        ]
    valid = {"action": "SEND", "id": 1, "data": {"packet": _stamped(BOB, "template", 4, bob_key)}}

    rng = random.Random(SEED)
    answers_per_conn: list[list[dict[str, Any]]] = []
    for conn_index in range(CONNECTIONS):
        frames = [_fuzz_frame(valid, rng) for _ in range(FRAMES_PER_CONNECTION)]
        sentinel = f"end-{conn_index}"
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            answers: list[dict[str, Any]] = []
            reader = threading.Thread(target=_read_until, args=(sock, sentinel, answers))
            reader.start()
            payload = b"\n".join(frames) + b"\n"
            payload += encode_frame({"action": "CHECK", "id": sentinel, "data": {"email": BOB}})
            sock.sendall(payload)
            reader.join(60)
            assert not reader.is_alive(), "the server stopped answering the fuzzed connection"
        answers_per_conn.append(answers)

    total = 0
    for answers in answers_per_conn:
        greeting, *rest = answers
        assert greeting["message"] == "MMTP Server Ready"
        assert rest[-1]["status"] == "ERROR"  # the unauthenticated CHECK sentinel
        assert rest[-1]["error"]["code"] == "AUTH_REQUIRED"
        assert len(rest) == FRAMES_PER_CONNECTION + 1, "every frame gets exactly one answer"
        for answer in rest:
            total += 1
            assert answer["status"] in ("OK", "ERROR")
            if answer["status"] == "ERROR":
                assert answer["error"]["code"] in ALL_CODES
                assert answer["error"]["code"] != INTERNAL, answer
    assert total == CONNECTIONS * (FRAMES_PER_CONNECTION + 1)

    # A normal client is still served, and everything stored before is still there.
    bob = Client(
        "127.0.0.1", port, server.tls_address[1], verify="insecure", keystore=tmp_path / "kb"
    )
    with bob:
        bob.auth(BOB, bob_key)
        received = [p["meta"]["messageId"] for p in bob.receive_all(BOB).messages]
        assert set(stored) <= set(received)
        assert bob.send(_stamped(BOB, "after fuzz", 4))["status"] == "OK"
