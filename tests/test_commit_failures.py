"""A commit that fails takes back everything its turn promised, and nothing read in that turn
rests on a write the failure took back (SPEC §7: nothing acknowledged is lost)."""

from __future__ import annotations

import pytest
from helpers import Wire, auth_signature, make_packet, registered

from mmtp_proto import pgp
from mmtp_proto.framing import encode_frame
from mmtp_proto.store import StoreError

pytestmark = [pytest.mark.secure, pytest.mark.both_backends]

CAROL = "(carol)%(localhost)"


def _fail_next_commit_with_writes(server) -> None:
    store = server.store
    real_commit = store.commit
    armed = {"once": True}

    def commit() -> None:
        if armed["once"] and store.pending:
            armed["once"] = False
            store.rollback()
            raise StoreError("disk I/O error (simulated)")
        real_commit()

    store.commit = commit


def test_auth_in_the_turn_of_a_lost_key_registration_does_not_authenticate(start_server):
    server = start_server(allow_plain_auth=True)
    attacker = _another_key(CAROL)
    with Wire(server, tls=False) as wire:
        _fail_next_commit_with_writes(server)
        wire.send_bytes(
            b"".join(
                wire_frame
                for wire_frame in (
                    _frame(
                        "REGISTER_KEY", 1, {"email": CAROL, "publicKey": attacker.public.armored}
                    ),
                    _frame(
                        "AUTH",
                        2,
                        {
                            "email": CAROL,
                            "signature": auth_signature(wire.greeting, CAROL, attacker),
                        },
                    ),
                )
            )
        )
        first, second = wire.read(), wire.read()
        assert first["error"]["code"] == "INTERNAL"
        assert second["error"]["code"] == "AUTH_FAILED"
        registered(server, CAROL)  # the real owner registers afterwards
        assert wire.error("RECEIVE", {"email": CAROL}) == "AUTH_REQUIRED"


def test_receive_in_the_turn_of_a_lost_send_does_not_see_it(start_server):
    server = start_server(allow_plain_auth=True)
    registered(server, CAROL)
    with Wire(server, tls=False) as wire:
        wire.auth(CAROL)
        lost = make_packet(CAROL, CAROL, subject="lost")  # a note to self
        _fail_next_commit_with_writes(server)
        wire.send_bytes(
            _frame("SEND", 1, {"packet": lost}) + _frame("RECEIVE", 2, {"email": CAROL})
        )
        sent, received = wire.read(), wire.read()
        assert sent["error"]["code"] == "INTERNAL"
        assert received["status"] == "OK" and received["count"] == 0
        cursor = received["cursor"]
        assert wire.send(make_packet(CAROL, CAROL, subject="real"))["status"] == "OK"
        after = wire.receive(CAROL, since=cursor)
        assert [m["content"]["subject"] for m in after["messages"]] == ["real"]


def test_a_connection_stops_being_authenticated_when_another_replaces_the_key(start_server):
    server = start_server(allow_plain_auth=True)
    registered(server, CAROL)
    new_key = _another_key(CAROL)
    with Wire(server, tls=False) as old, Wire(server, tls=False) as owner:
        old.auth(CAROL)
        owner.auth(CAROL)
        # The owner replaces the key (say, the old one leaked): the owner stays in...
        answer = owner.request(
            "REGISTER_KEY", {"email": CAROL, "publicKey": new_key.public.armored}
        )
        assert answer["status"] == "OK", answer
        assert owner.receive(CAROL)["status"] == "OK"
        # ...and a connection authenticated with the old key is out.
        assert old.error("RECEIVE", {"email": CAROL}) == "AUTH_REQUIRED"


def _frame(action: str, request_id: int, data: dict) -> bytes:
    return encode_frame({"action": action, "id": request_id, "data": data})


def _another_key(email: str) -> pgp.PrivateKey:
    """A key for `email` other than the one the helpers register for it."""
    return pgp.generate_key(email, "Someone else", algorithm="ed25519")


def test_a_key_registered_twice_in_a_failed_turn_is_ok_only_where_it_was_stored(start_server):
    server = start_server()
    key = _another_key(CAROL).public.armored
    with Wire(server, tls=False) as wire:
        _fail_next_commit_with_writes(server)
        request = {"email": CAROL, "publicKey": key}
        wire.send_bytes(_frame("REGISTER_KEY", 1, request) + _frame("REGISTER_KEY", 2, request))
        first, second = wire.read(), wire.read()
        # The first registration was lost with the failed commit; the second ran on what was
        # committed (no key), registered it again, and that commit held.
        assert first["error"]["code"] == "INTERNAL"
        assert second["status"] == "OK" and "registered" in second["message"], second
        assert wire.request("REQUEST_PUBLIC_KEY", {"email": CAROL})["status"] == "OK"
