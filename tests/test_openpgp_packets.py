"""Shapes no honest client sends are refused before PGPy spends time on them."""

from __future__ import annotations

import base64

import pytest
from helpers import key_for, padded_signature
from load_tools import bloated_public_key

from mmtp_proto import openpgp_packets, pgp
from mmtp_proto.errors import KEY_INVALID, MMTPError

pytestmark = pytest.mark.secure

EMAIL = "(census)%(example.com)"


def test_a_key_with_too_many_user_ids_is_refused_before_parsing() -> None:
    armored = bloated_public_key(EMAIL, openpgp_packets.MAX_USER_IDS + 1)
    with pytest.raises(MMTPError) as caught:
        pgp.validate_public_key_for(armored, EMAIL)
    assert caught.value.code == KEY_INVALID
    assert "user ids" in caught.value.message


def test_a_key_with_a_few_repeated_user_ids_is_still_read() -> None:
    armored = bloated_public_key(EMAIL, 3)
    assert EMAIL in pgp.validate_public_key_for(armored, EMAIL).emails


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
