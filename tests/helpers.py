"""Shared helpers for the wire tests: raw sockets, real keys, packets and stamps.

`Wire` (the one of `wire.py`, plus action shortcuts) sends whatever bytes a test crafts and
hands back every answer as a dict, errors included. Keys are real Ed25519 OpenPGP keys, made
once per test run.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from wire import Wire as BaseWire

from mmtp_proto import hashcash, openpgp_packets, pgp
from mmtp_proto.canonical import auth_challenge
from mmtp_proto.errors import MMTPError
from mmtp_proto.message import seal
from mmtp_proto.packet import clear_content, signature_input_of
from mmtp_proto.server import Server

DIFFICULTY = 6

ALICE = "(alice)%(localhost)"
BOB = "(bob)%(localhost)"
CAROL = "(carol)%(localhost)"
MALLORY = "(mallory)%(localhost)"
BOB_EXAMPLE = "(bob)%(example.com)"
# A sender on a domain the test servers do not serve (they serve localhost and example.com):
# only a connection domain-authenticated for remote.org may send as it (SPEC §3).
DAVE_REMOTE = "(dave)%(remote.org)"
# A local user who writes to the tests' mailboxes (the "stranger" of most SEND tests): it may
# send as itself once authenticated (`as_sender`) or by signing with its registered key.
DAVE = "(dave)%(localhost)"


# ---------------------------------------------------------------------------- keys


@functools.cache
def key_for(email: str) -> pgp.PrivateKey:
    """One Ed25519 key per address for the whole test run (cached: keys are immutable)."""
    name = email[1 : email.index(")")].capitalize()
    return pgp.generate_key(email, name, algorithm="ed25519")


def public_armored(email: str) -> str:
    return key_for(email).public.armored


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def dearmor(armored: str) -> bytes:
    """The binary packets inside one ASCII-armored block, whatever its kind."""
    kind = armored.strip().splitlines()[0].removeprefix("-----BEGIN PGP ").removesuffix("-----")
    return openpgp_packets.dearmor(armored, kind)


def armor(data: bytes, kind: str = "PUBLIC KEY BLOCK") -> str:
    """Binary OpenPGP packets as one ASCII-armored block of `kind`, with its CRC-24."""
    text = base64.b64encode(data).decode("ascii")
    body = "\n".join(text[i : i + 64] for i in range(0, len(text), 64))
    crc = base64.b64encode(_crc24(data).to_bytes(3, "big")).decode("ascii")
    return f"-----BEGIN PGP {kind}-----\n\n{body}\n={crc}\n-----END PGP {kind}-----\n"


def split_packets(armored: str) -> list[tuple[int, bytes]]:
    """(tag, whole packet with its header) for each packet of an armored block."""
    data = dearmor(armored)
    found, start = [], 0
    for tag, body, length in openpgp_packets.packets(data):
        found.append((tag, data[start : body + length]))
        start = body + length
    return found


def padded_signature(armored: str, unhashed_bytes: int) -> str:
    """The same (still valid) signature with about `unhashed_bytes` of extra unhashed
    subpackets: cheap to make, slow for a PGPy-based verifier to parse."""
    data = dearmor(armored)
    assert data[0] & 0x40 and data[1] < 192, "expects a small new-format signature packet"
    body = data[2 : 2 + data[1]]
    hashed_end = 6 + int.from_bytes(body[4:6], "big")
    unhashed_len = int.from_bytes(body[hashed_end : hashed_end + 2], "big")
    original = body[hashed_end + 2 : hashed_end + 2 + unhashed_len]
    rest = body[hashed_end + 2 + unhashed_len :]
    assert original, "expects the signer's Issuer subpacket in the unhashed area"
    unhashed = original * (min(unhashed_bytes, 65_000) // len(original))
    body = body[:hashed_end] + len(unhashed).to_bytes(2, "big") + unhashed + rest
    packet = bytes([0xC2, 0xFF]) + len(body).to_bytes(4, "big") + body
    return armor(packet, "SIGNATURE")


def auth_signature(greeting: dict[str, Any], email: str, key: pgp.PrivateKey | None = None) -> str:
    """The AUTH signature for this connection's greeting (server name and nonce)."""
    challenge = auth_challenge(str(greeting["server"]), str(greeting["nonce"]), email)
    return pgp.sign_detached(challenge, key or key_for(email))


# ---------------------------------------------------------------------------- sockets


class Wire(BaseWire):
    """`wire.Wire` with the shortcuts of the action tests (their keys, one-call actions)."""

    def ok(self, action: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = self.request(action, data)
        assert answer["status"] == "OK", answer
        return answer

    def error(self, action: str, data: dict[str, Any] | None = None) -> str:
        """Send a request that must fail; return its error code (and check the error shape)."""
        return error_code(self.request(action, data))

    def register(self, email: str, key: pgp.PrivateKey | None = None) -> dict[str, Any]:
        armored = (key or key_for(email)).public.armored
        return self.request("REGISTER_KEY", {"email": email, "publicKey": armored})

    def auth(self, email: str, key: pgp.PrivateKey | None = None) -> dict[str, Any]:
        return super().auth(email, key or key_for(email))

    def send(self, packet: dict[str, Any]) -> dict[str, Any]:
        return self.request("SEND", {"packet": packet})

    def receive(self, email: str, **data: Any) -> dict[str, Any]:
        return self.ok("RECEIVE", {"email": email, **data})


class _Connection(Protocol):
    def register(self, email: str) -> Any: ...
    def auth(self, email: str) -> Any: ...


_C = TypeVar("_C", bound=_Connection)


def as_sender(conn: _C, email: str = DAVE) -> _C:
    """`conn` (a `Wire`, or a `rules_harness` connection), authenticated as `email` (its test
    key registered first if need be), so that it may SEND as `email` (the sender rule of
    SPEC §3). Needs TLS, as AUTH does; over plain TCP, sign as `email` instead."""
    for answer in (conn.register(email), conn.auth(email)):
        assert answer == "OK" or answer["status"] == "OK", answer
    return conn


def error_code(answer: dict[str, Any]) -> str:
    """The code of an ERROR answer, after checking the SPEC §1 error shape."""
    assert answer["status"] == "ERROR", answer
    error = answer["error"]
    assert isinstance(error["code"], str)
    assert isinstance(error["message"], str) and error["message"], answer
    assert answer["message"] == error["message"], answer
    return error["code"]


def registered(server: Server, *emails: str) -> None:
    """Register the test key of each address on `server` (over TLS, as a client would)."""
    with Wire(server) as wire:
        for email in emails:
            answer = wire.register(email)
            assert answer["status"] == "OK", answer


# ---------------------------------------------------------------------------- packets


def stamp_for(
    packet: dict[str, Any], *, bits: int = DIFFICULTY, now: int | None = None, **kw: Any
) -> dict[str, Any]:
    """A real stamp for this packet's recipient and content hash."""
    return hashcash.mint(
        packet["recipient"], bits, packet["verification"]["messageHash"], now=now, **kw
    )


def make_packet(
    sender: str,
    recipient: str,
    *,
    subject: str = "Hello",
    body: str = "A test message.",
    sign: bool = False,
    sign_with: pgp.PrivateKey | None = None,
    encrypt: bool = False,
    stamp: bool = True,
    message_id: str | None = None,
    timestamp: int | None = None,
) -> dict[str, Any]:
    """A packet as a client builds it: sealed (optionally encrypted/signed) and stamped."""
    packet = seal(
        sender=sender,
        recipient=recipient,
        content=clear_content(subject, body),
        encrypt_to=[key_for(recipient).public] if encrypt else None,
        sign_with=sign_with or (key_for(sender) if sign else None),
        message_id=message_id,
        timestamp=timestamp,
    )
    if stamp:
        packet["meta"]["hashcashToken"] = stamp_for(packet)
    return packet


def resign(packet: dict[str, Any], key: pgp.PrivateKey) -> dict[str, Any]:
    """Sign (again) the packet's signature input with `key`."""
    packet["verification"]["signature"] = pgp.sign_detached(signature_input_of(packet), key)
    packet["meta"]["signed"] = True
    return packet


def with_other_id(packet: dict[str, Any], message_id: str) -> dict[str, Any]:
    """The same content (so the same stamp binding) under another messageId."""
    copy = json.loads(json.dumps(packet))
    copy["meta"]["messageId"] = message_id
    return copy


def hex_id(n: int) -> str:
    """A deterministic, valid messageId (32 lowercase hex) for readable tests."""
    return hashlib.sha256(f"id-{n}-{time.time_ns()}".encode()).hexdigest()[:32]


def new_request(store: Any) -> None:
    """What the server does before a request answered in a round of its own: look at what
    other processes committed, then start the request."""
    store.look_again()
    store.refresh()


def stored_fields(
    message_id: str, stamp: str, recipient: str = BOB_EXAMPLE, message_hash: str = "0" * 64
) -> dict[str, Any]:
    """The keywords of a store's `add_message`/`stage_message` for a minimal message (the
    store tests, below the protocol)."""
    return {
        "recipient": recipient,
        "message_id": message_id,
        "message_hash": message_hash,
        "packet": {"meta": {"messageId": message_id}},
        "received_at": 1,
        "stamp_key": stamp,
        "stamp_expires_at": 10,
    }


class HeldAnswerText:
    """A held answer, as server_connection.HeldAnswer keeps one: its text, withdrawn or not
    (for driving group_commit.GroupCommit over real stores)."""

    def __init__(self, confirm: Callable[[], object] | None) -> None:
        self.text = "delivered"
        self.confirm = confirm

    def withdraw(self) -> None:
        self.text = "nothing was kept"

    def settle(self) -> None:
        assert self.confirm is not None
        try:
            self.confirm()
        except MMTPError as exc:
            self.text = exc.code
