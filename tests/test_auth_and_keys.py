"""AUTH and the key directory (SPEC §5, §7) against a real server over real sockets.

REGISTER_KEY: trust on first use, replacing only as the owner, KEY_INVALID for what is not a
usable public key for the address. AUTH: the challenge, TLS_REQUIRED on plain connections,
AUTH_FAILED, and the per-address RATE_LIMITED after repeated failures.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pgpy
import pytest
from helpers import (
    ALICE,
    BOB,
    CAROL,
    DAVE_REMOTE,
    MALLORY,
    Wire,
    armor,
    auth_signature,
    dearmor,
    error_code,
    key_for,
    make_packet,
    padded_signature,
    registered,
)
from pgpy.constants import EllipticCurveOID, KeyFlags, PubKeyAlgorithm

from mmtp_proto import pgp
from mmtp_proto.canonical import auth_challenge
from mmtp_proto.openpgp_packets import material_digest

pytestmark = [pytest.mark.secure, pytest.mark.both_backends]


@pytest.fixture(scope="module")
def alice_second_key() -> pgp.PrivateKey:
    """Another key for alice: what she registers when she replaces hers."""
    return pgp.generate_key(ALICE, "Alice", algorithm="ed25519")


@pytest.fixture(scope="module")
def alice_updated_public_key() -> str:
    """Alice's own key (same fingerprint) after she added an encryption subkey."""
    key, _ = pgpy.PGPKey.from_blob(key_for(ALICE).armored)
    key.add_subkey(
        pgpy.PGPKey.new(PubKeyAlgorithm.ECDH, EllipticCurveOID.Curve25519),
        usage={KeyFlags.EncryptCommunications, KeyFlags.EncryptStorage},
        # Newer than the key's own self-signatures, even when both are made in one second:
        # only a newer self-signature updates a registered key (SPEC §5 renewal).
        created=datetime.now(UTC) + timedelta(seconds=2),
    )
    armored = str(key.pubkey)
    assert pgp.PublicKey.from_armored(armored).fingerprint == key_for(ALICE).public.fingerprint
    return armored


def directory_fingerprint(server, email: str) -> str:
    with Wire(server, tls=False) as wire:
        return wire.ok("REQUEST_PUBLIC_KEY", {"email": email})["fingerprint"]


# ---------------------------------------------------------------------------- REGISTER_KEY


def test_register_key_ok_answer(server):
    with Wire(server) as wire:
        answer = wire.register(ALICE)
    assert answer["status"] == "OK", answer
    assert answer["fingerprint"] == key_for(ALICE).public.fingerprint
    assert isinstance(answer["message"], str) and answer["message"]


def test_register_key_over_plain_tcp_is_allowed(server):
    with Wire(server, tls=False) as wire:
        assert wire.register(ALICE)["status"] == "OK"


def test_first_registration_wins(server, alice_second_key):
    with Wire(server) as wire:
        assert wire.register(ALICE)["status"] == "OK"
        answer = wire.register(ALICE, alice_second_key)
    assert error_code(answer) == "KEY_EXISTS"
    assert directory_fingerprint(server, ALICE) == key_for(ALICE).public.fingerprint


def test_registering_the_identical_key_again_is_ok(server):
    with Wire(server) as wire:
        first = wire.register(ALICE)
    with Wire(server, tls=False) as wire:
        second = wire.register(ALICE)
    assert first["status"] == second["status"] == "OK"
    assert first["fingerprint"] == second["fingerprint"]


def test_replacing_a_key_as_someone_else_is_forbidden(server, alice_second_key):
    registered(server, ALICE, BOB)
    with Wire(server) as wire:
        assert wire.auth(BOB)["status"] == "OK"
        assert error_code(wire.register(ALICE, alice_second_key)) == "FORBIDDEN"
    assert directory_fingerprint(server, ALICE) == key_for(ALICE).public.fingerprint


def test_replacing_a_key_as_the_owner_is_ok(server, alice_second_key):
    registered(server, ALICE)
    with Wire(server) as wire:
        assert wire.auth(ALICE)["status"] == "OK"
        answer = wire.register(ALICE, alice_second_key)
    assert answer["status"] == "OK", answer
    assert answer["fingerprint"] == alice_second_key.public.fingerprint
    assert directory_fingerprint(server, ALICE) == alice_second_key.public.fingerprint
    # From now on only the new key authenticates alice.
    with Wire(server) as wire:
        assert error_code(wire.auth(ALICE)) == "AUTH_FAILED"
        assert wire.auth(ALICE, alice_second_key)["status"] == "OK"


def test_an_update_of_the_same_key_is_merged_without_auth(server, alice_updated_public_key):
    """SPEC §5 renewal: same primary key, a newer self-signature (the new subkey's binding,
    which only alice's private key can make): merged without AUTH, whoever sends it."""
    registered(server, ALICE, BOB)
    update = {"email": ALICE, "publicKey": alice_updated_public_key}
    with Wire(server) as wire:
        wire.auth(BOB)
        answer = wire.ok("REGISTER_KEY", update)
    assert answer["fingerprint"] == key_for(ALICE).public.fingerprint
    with Wire(server, tls=False) as wire:
        served = wire.ok("REQUEST_PUBLIC_KEY", {"email": ALICE})["publicKey"]
    # The union of both copies: here the update holds every packet of the stored key.
    assert material_digest(served) == material_digest(alice_updated_public_key)
    assert material_digest(served) != material_digest(key_for(ALICE).public.armored)


def test_owner_can_update_a_key_with_the_same_fingerprint(server, alice_updated_public_key):
    registered(server, ALICE)
    with Wire(server) as wire:
        wire.auth(ALICE)
        answer = wire.ok("REGISTER_KEY", {"email": ALICE, "publicKey": alice_updated_public_key})
        assert answer["fingerprint"] == key_for(ALICE).public.fingerprint
        served = wire.ok("REQUEST_PUBLIC_KEY", {"email": ALICE})["publicKey"]
    assert material_digest(served) == material_digest(alice_updated_public_key)
    assert served != key_for(ALICE).public.armored
    # Registering what is now stored is "identical" again, with or without AUTH, and the
    # server uses the updated key from now on (the same primary key still signs).
    with Wire(server) as wire:
        assert wire.ok("REGISTER_KEY", {"email": ALICE, "publicKey": served})["status"] == "OK"
        assert wire.auth(ALICE)["status"] == "OK"


def test_registered_key_survives_a_restart(start_server, tmp_path, alice_second_key):
    data_dir = tmp_path / "restart"
    first = start_server(data_dir=data_dir)
    registered(first, ALICE)
    first.stop()
    server = start_server(data_dir=data_dir)
    assert directory_fingerprint(server, ALICE) == key_for(ALICE).public.fingerprint
    with Wire(server) as wire:
        assert error_code(wire.register(ALICE, alice_second_key)) == "KEY_EXISTS"


def test_rearmored_public_key_is_accepted(server):
    """The armor is only transport: the same packets armored anew are the same key."""
    armored = armor(dearmor(key_for(ALICE).public.armored))
    with Wire(server) as wire:
        answer = wire.request("REGISTER_KEY", {"email": ALICE, "publicKey": armored})
    assert answer["status"] == "OK", answer
    assert answer["fingerprint"] == key_for(ALICE).public.fingerprint


def test_secret_key_is_key_invalid(server):
    with Wire(server) as wire:
        answer = wire.request("REGISTER_KEY", {"email": ALICE, "publicKey": key_for(ALICE).armored})
    assert error_code(answer) == "KEY_INVALID"
    assert "secret" in answer["message"] or "private" in answer["message"]


def test_key_for_another_address_is_key_invalid(server):
    with Wire(server) as wire:
        answer = wire.request(
            "REGISTER_KEY", {"email": ALICE, "publicKey": key_for(BOB).public.armored}
        )
    assert error_code(answer) == "KEY_INVALID"
    assert ALICE in answer["message"]


@pytest.mark.parametrize(
    "public_key",
    [
        "",
        "garbage",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n",
        None,
        42,
        ["-----BEGIN PGP PUBLIC KEY BLOCK-----"],
    ],
    ids=["empty", "garbage", "broken-armor", "null", "number", "list"],
)
def test_garbage_key_is_key_invalid(server, public_key):
    with Wire(server) as wire:
        answer = wire.request("REGISTER_KEY", {"email": ALICE, "publicKey": public_key})
        assert error_code(answer) == "KEY_INVALID"
        assert wire.error("REQUEST_PUBLIC_KEY", {"email": ALICE}) == "KEY_NOT_FOUND"


def test_two_keys_in_one_block_is_key_invalid(server):
    both = armor(dearmor(key_for(ALICE).public.armored) + dearmor(key_for(BOB).public.armored))
    with Wire(server) as wire:
        answer = wire.request("REGISTER_KEY", {"email": ALICE, "publicKey": both})
    assert error_code(answer) == "KEY_INVALID"


def test_register_key_for_another_domain_is_not_local(server):
    with Wire(server) as wire:
        assert error_code(wire.register(DAVE_REMOTE)) == "NOT_LOCAL"


def test_register_key_with_a_bad_address_is_invalid_address(server):
    with Wire(server) as wire:
        answer = wire.request(
            "REGISTER_KEY", {"email": "alice@localhost", "publicKey": key_for(ALICE).public.armored}
        )
        assert error_code(answer) == "INVALID_ADDRESS"
        assert wire.error("REGISTER_KEY", {"publicKey": key_for(ALICE).public.armored}) == (
            "BAD_REQUEST"
        )


# ---------------------------------------------------------------------------- AUTH


def test_auth_ok_answer(server):
    registered(server, ALICE)
    with Wire(server) as wire:
        answer = wire.auth(ALICE)
    assert answer["status"] == "OK", answer
    assert answer["email"] == ALICE


def test_auth_with_the_wrong_key_fails(server):
    registered(server, ALICE)
    with Wire(server) as wire:
        answer = wire.auth(ALICE, key_for(MALLORY))
        assert error_code(answer) == "AUTH_FAILED"
        assert wire.error("CHECK", {"email": ALICE}) == "AUTH_REQUIRED"


def test_auth_signature_from_another_connection_fails(server):
    """The nonce makes a captured AUTH useless on any other connection."""
    registered(server, ALICE)
    with Wire(server) as first, Wire(server) as second:
        stolen = auth_signature(first.greeting, ALICE)
        answer = second.request("AUTH", {"email": ALICE, "signature": stolen})
        assert error_code(answer) == "AUTH_FAILED"
        # On its own connection it works.
        ok = first.request("AUTH", {"email": ALICE, "signature": stolen})
        assert ok["status"] == "OK", ok


def test_auth_signature_for_another_address_fails(server):
    registered(server, ALICE, BOB)
    with Wire(server) as wire:
        # Alice's challenge signed by alice does not make anyone bob.
        signature = auth_signature(wire.greeting, ALICE)
        answer = wire.request("AUTH", {"email": BOB, "signature": signature})
    assert error_code(answer) == "AUTH_FAILED"


def test_auth_signature_over_another_server_name_fails(server):
    registered(server, ALICE)
    with Wire(server) as wire:
        challenge = auth_challenge("evil-server/1.0", wire.greeting["nonce"], ALICE)
        signature = pgp.sign_detached(challenge, key_for(ALICE))
        answer = wire.request("AUTH", {"email": ALICE, "signature": signature})
    assert error_code(answer) == "AUTH_FAILED"


def test_auth_for_an_address_without_a_key_fails(server):
    with Wire(server) as wire:
        answer = wire.auth(CAROL)
    assert error_code(answer) == "AUTH_FAILED"


@pytest.mark.parametrize(
    "data",
    [
        {"email": ALICE},
        {"email": ALICE, "signature": None},
        {"email": ALICE, "signature": 12},
        {"signature": "x"},
    ],
    ids=["no-signature", "null-signature", "number-signature", "no-email"],
)
def test_auth_without_a_usable_signature_is_bad_request(server, data):
    registered(server, ALICE)
    with Wire(server) as wire:
        assert wire.error("AUTH", data) == "BAD_REQUEST"


def test_bloated_auth_signature_is_refused_before_it_is_parsed(server):
    """A valid signature padded with 65 KB of unhashed subpackets costs PGPy seconds to
    parse on the loop thread: AUTH takes no more than a message signature may carry."""
    registered(server, ALICE)
    with Wire(server) as wire:
        bloated = padded_signature(auth_signature(wire.greeting, ALICE), 65_000)
        started = time.monotonic()
        answer = wire.request("AUTH", {"email": ALICE, "signature": bloated})
        elapsed = time.monotonic() - started
        assert error_code(answer) == "BAD_REQUEST"
        assert "signature" in answer["message"]
        assert elapsed < 1.0
        assert wire.auth(ALICE)["status"] == "OK"


def test_auth_with_a_garbled_signature_fails(server):
    registered(server, ALICE)
    with Wire(server) as wire:
        assert wire.error("AUTH", {"email": ALICE, "signature": "not a signature"}) == (
            "AUTH_FAILED"
        )


def test_a_second_auth_switches_the_identity(server):
    registered(server, ALICE, BOB)
    with Wire(server) as wire:
        wire.auth(ALICE)
        assert wire.ok("CHECK", {"email": ALICE})["count"] == 0
        wire.auth(BOB)
        assert wire.ok("CHECK", {"email": BOB})["count"] == 0
        assert wire.error("CHECK", {"email": ALICE}) == "FORBIDDEN"


def test_failed_auth_keeps_the_previous_identity(server):
    registered(server, ALICE, BOB)
    with Wire(server) as wire:
        wire.auth(ALICE)
        assert error_code(wire.auth(BOB, key_for(MALLORY))) == "AUTH_FAILED"
        assert wire.ok("CHECK", {"email": ALICE})["count"] == 0


def test_auth_over_plain_is_tls_required(server):
    registered(server, ALICE)
    with Wire(server, tls=False) as wire:
        assert wire.greeting["features"]["plainAuth"] is False
        answer = wire.auth(ALICE)
        assert error_code(answer) == "TLS_REQUIRED"
        assert str(server.tls_address[1]) in answer["message"] or "TLS" in answer["message"]
        assert wire.error("CHECK", {"email": ALICE}) == "AUTH_REQUIRED"


def test_auth_over_plain_works_when_the_operator_allows_it(start_server):
    server = start_server(allow_plain_auth=True)
    registered(server, ALICE)
    with Wire(server, tls=False) as wire:
        assert wire.greeting["features"]["plainAuth"] is True
        assert wire.auth(ALICE)["status"] == "OK"
        assert wire.ok("CHECK", {"email": ALICE})["count"] == 0
    with Wire(server) as wire:
        assert wire.greeting["features"]["plainAuth"] is True


def test_tls_required_is_not_counted_as_a_failure(start_server):
    server = start_server(failure_limit=3)
    registered(server, ALICE)
    with Wire(server, tls=False) as wire:
        for _ in range(8):
            assert error_code(wire.auth(ALICE)) == "TLS_REQUIRED"
    with Wire(server) as wire:
        assert wire.auth(ALICE)["status"] == "OK"


# ---------------------------------------------------------------------------- rate limit


def test_repeated_failed_auth_is_rate_limited(start_server):
    server = start_server(failure_limit=3)
    registered(server, ALICE, BOB)
    with Wire(server) as wire:
        for _ in range(4):  # more than failure_limit failures
            assert error_code(wire.auth(ALICE, key_for(MALLORY))) == "AUTH_FAILED"
        answer = wire.auth(ALICE, key_for(MALLORY))
        assert error_code(answer) == "RATE_LIMITED"
        # Even the right key is refused for a while, and on a new connection too.
        assert error_code(wire.auth(ALICE)) == "RATE_LIMITED"
        # Other actions still work.
        assert wire.ok("REQUEST_PUBLIC_KEY", {"email": ALICE})["email"] == ALICE
    with Wire(server) as wire:
        assert error_code(wire.auth(ALICE)) == "RATE_LIMITED"
        # AUTH failures count per (source, address) (issue 11 item 9): they do not hold back
        # this source's other addresses or its REGISTER_KEYs.
        assert wire.auth(BOB)["status"] == "OK"
        assert wire.register(CAROL)["status"] == "OK"
        # SEND is paid for by HashCash, not limited by failures.
        assert wire.send(make_packet(BOB, ALICE))["status"] == "OK"


def test_failures_at_the_limit_are_not_yet_rate_limited(start_server):
    server = start_server(failure_limit=3)
    registered(server, ALICE)
    with Wire(server) as wire:
        for _ in range(3):
            assert error_code(wire.auth(ALICE, key_for(MALLORY))) == "AUTH_FAILED"
        assert wire.auth(ALICE)["status"] == "OK"


def test_repeated_failed_register_key_is_rate_limited(start_server):
    server = start_server(failure_limit=3)
    with Wire(server) as wire:
        for _ in range(4):
            answer = wire.request("REGISTER_KEY", {"email": ALICE, "publicKey": "garbage"})
            assert error_code(answer) == "KEY_INVALID"
        assert error_code(wire.register(ALICE)) == "RATE_LIMITED"
        assert error_code(wire.auth(ALICE)) == "RATE_LIMITED"
        assert wire.error("REQUEST_PUBLIC_KEY", {"email": ALICE}) == "KEY_NOT_FOUND"


def test_default_limit_allows_ten_failures(server):
    registered(server, ALICE)
    with Wire(server) as wire:
        for _ in range(10):
            assert error_code(wire.auth(ALICE, key_for(MALLORY))) == "AUTH_FAILED"
        assert wire.auth(ALICE)["status"] == "OK"
        assert error_code(wire.auth(ALICE, key_for(MALLORY))) == "AUTH_FAILED"
        assert error_code(wire.auth(ALICE)) == "RATE_LIMITED"
