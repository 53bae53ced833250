"""Shapes no honest client sends are refused before PGPy spends time on them."""

from __future__ import annotations

import base64

import pgpy
import pytest
from helpers import Wire, key_for, padded_signature
from pgpy.constants import (
    CompressionAlgorithm,
    EllipticCurveOID,
    HashAlgorithm,
    KeyFlags,
    PubKeyAlgorithm,
    SymmetricKeyAlgorithm,
)

from mmtp_proto import openpgp_packets, pgp
from mmtp_proto.errors import KEY_INVALID, MMTPError

pytestmark = pytest.mark.secure

EMAIL = "(census)%(example.com)"


def _key_with_user_ids(email: str, count: int) -> str:
    """A sound Ed25519 key with `count` self-signed user ids for `email`."""
    key = pgpy.PGPKey.new(PubKeyAlgorithm.EdDSA, EllipticCurveOID.Ed25519)
    for n in range(count):
        key.add_uid(
            pgpy.PGPUID.new(f"User {n}", email=email),
            usage={KeyFlags.Sign, KeyFlags.Certify},
            hashes=[HashAlgorithm.SHA256],
            ciphers=[SymmetricKeyAlgorithm.AES256],
            compression=[CompressionAlgorithm.Uncompressed],
        )
    subkey = pgpy.PGPKey.new(PubKeyAlgorithm.ECDH, EllipticCurveOID.Curve25519)
    key.add_subkey(subkey, usage={KeyFlags.EncryptCommunications, KeyFlags.EncryptStorage})
    return str(key.pubkey)


def test_a_key_with_too_many_user_ids_is_refused_before_parsing() -> None:
    armored = _key_with_user_ids(EMAIL, openpgp_packets.MAX_USER_IDS + 1)
    with pytest.raises(MMTPError) as caught:
        pgp.validate_public_key_for(armored, EMAIL)
    assert caught.value.code == KEY_INVALID
    assert "user ids" in caught.value.message


def test_a_key_with_a_few_repeated_user_ids_is_still_read() -> None:
    armored = _key_with_user_ids(EMAIL, 3)
    assert pgp.validate_public_key_for(armored, EMAIL).emails == [EMAIL] * 3


def test_the_same_key_in_another_packet_order_has_the_same_material() -> None:
    armored = _key_with_user_ids(EMAIL, 3)
    rearmored = pgp.validate_public_key_for(armored, EMAIL).armored
    again = pgp.PublicKey.from_armored(rearmored).armored
    digest = openpgp_packets.material_digest
    assert digest(armored) == digest(rearmored) == digest(again)
    assert digest(armored) != digest(_key_with_user_ids(EMAIL, 3))


def test_registering_an_identical_multi_user_id_key_again_is_ok(server) -> None:
    email = "(multi)%(example.com)"
    armored = _key_with_user_ids(email, 2)
    with Wire(server, tls=False) as wire:
        first = wire.request("REGISTER_KEY", {"email": email, "publicKey": armored})
        again = wire.request("REGISTER_KEY", {"email": email, "publicKey": armored})
    assert first["status"] == again["status"] == "OK", again
    assert again["fingerprint"] == first["fingerprint"]


def test_a_signature_with_padded_subpackets_does_not_verify() -> None:
    data = b"signed bytes"
    signature = pgp.sign_detached(data, key_for(EMAIL))
    assert pgp.verify_detached(data, signature, key_for(EMAIL).public)
    padded = padded_signature(signature, 8000)
    assert not pgp.verify_detached(data, padded, key_for(EMAIL).public)
    with pytest.raises(ValueError, match="implausibly large"):
        openpgp_packets.signature_packet(padded)


def test_two_signature_packets_are_not_a_detached_signature() -> None:
    data = b"signed bytes"
    one = openpgp_packets.dearmor(pgp.sign_detached(data, key_for(EMAIL)), "SIGNATURE")
    body = base64.b64encode(one + one).decode()
    doubled = f"-----BEGIN PGP SIGNATURE-----\n\n{body}\n-----END PGP SIGNATURE-----\n"
    assert not pgp.verify_detached(data, doubled, key_for(EMAIL).public)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00\x01", b"\xc2", b"\xc2\xff\x00", b"\xc2\x05ab", b"\x89\x00", b"\x8b"],
    ids=[
        "empty",
        "not-a-packet",
        "no-length",
        "short-4-byte-length",
        "runs-past-end",
        "old-format-short-length",
        "indeterminate",
    ],
)
def test_broken_packet_framing_is_a_value_error(data: bytes) -> None:
    if data == b"":
        assert openpgp_packets.packets(data) == []
        return
    with pytest.raises(ValueError):
        openpgp_packets.packets(data)
