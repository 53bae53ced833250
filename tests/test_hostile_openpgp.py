"""Issue 11 attack 1: OpenPGP data shaped to make parsing slow is refused in milliseconds.

Each input here froze the server for seconds before: a quadratic armor regex, a key signature
with ~23,000 empty subpackets, an RSA key with a 3,070-bit public exponent and 98 copies of its
self-signature. The packet walker in `openpgp_packets` refuses them before PGPy parses.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import time

import pgpy
import pytest
from helpers import armor, key_for, split_packets
from pgpy.constants import HashAlgorithm, KeyFlags, PubKeyAlgorithm
from pgpy.packet.fields import MPI

from mmtp_proto import openpgp_packets, pgp
from mmtp_proto.errors import KEY_INVALID, SIGNATURE_INVALID, MMTPError

pytestmark = pytest.mark.secure

EMAIL = "(hostile)%(example.com)"
BIG_E = "(bige)%(example.com)"
# The attacks cost 0.7-20 s each; the checks cost microseconds. Generous for a loaded machine.
QUICK = 0.5


def _signature_with_extra_subpackets(packet: bytes, extra: bytes) -> bytes:
    """The signature packet with `extra` appended to its unhashed area (still valid)."""
    ((tag, start, length),) = openpgp_packets.packets(packet)
    assert tag == openpgp_packets.SIGNATURE
    body = packet[start : start + length]
    hashed_end = 6 + int.from_bytes(body[4:6], "big")
    unhashed_len = int.from_bytes(body[hashed_end : hashed_end + 2], "big")
    unhashed = body[hashed_end + 2 : hashed_end + 2 + unhashed_len] + extra
    rest = body[hashed_end + 2 + unhashed_len :]
    body = body[:hashed_end] + len(unhashed).to_bytes(2, "big") + unhashed + rest
    return bytes([0xC2, 0xFF]) + len(body).to_bytes(4, "big") + body


def _first_user_id_signature(parts: list[tuple[int, bytes]]) -> int:
    seen_uid = False
    for index, (tag, _) in enumerate(parts):
        seen_uid = seen_uid or tag == openpgp_packets.USER_ID
        if seen_uid and tag == openpgp_packets.SIGNATURE:
            return index
    raise AssertionError("no user id signature")


def _refused_quickly(armored: str, email: str, words: str) -> MMTPError:
    t0 = time.perf_counter()
    with pytest.raises(MMTPError) as caught:
        pgp.validate_public_key_for(armored, email)
    elapsed = time.perf_counter() - t0
    assert caught.value.code == KEY_INVALID
    assert words in caught.value.message, caught.value.message
    assert elapsed < QUICK, f"took {elapsed:.3f} s"
    return caught.value


# --- (a) the armor ---------------------------------------------------------------------------


def _with_header_line(armored: str, line: str) -> str:
    first, rest = armored.split("\n", 1)
    return f"{first}\n{line}\n{rest}"


def _after_bogus_block(armored: str, line: str) -> str:
    """A bogus armor start and one long line before the real block: the old regex tried
    every way to split the line at each ": " (2.4 s for an 8 KiB line, worse than quadratic)."""
    first = armored.split("\n", 1)[0]
    return f"{first}\n{line}\n{armored}"


@pytest.mark.parametrize("pairs", [4096, 32_768], ids=["8-KiB", "64-KiB"])
@pytest.mark.parametrize("shape", [_after_bogus_block, _with_header_line])
@pytest.mark.parametrize("prefix", ["", "X"], ids=["bare", "keyed"])
def test_an_armor_line_of_colon_pairs_is_read_in_linear_time(shape, prefix, pairs) -> None:
    armored = shape(key_for(EMAIL).public.armored, prefix + ": " * pairs)
    t0 = time.perf_counter()
    with contextlib.suppress(ValueError):  # refusing is fine too; taking seconds is not
        openpgp_packets.dearmor(armored, "PUBLIC KEY BLOCK")
    elapsed = time.perf_counter() - t0
    assert elapsed < QUICK, f"took {elapsed:.3f} s"


def test_a_key_after_a_bogus_armor_line_is_found_quickly() -> None:
    armored = _after_bogus_block(key_for(EMAIL).public.armored, ": " * 32_768)
    t0 = time.perf_counter()
    assert pgp.validate_public_key_for(armored, EMAIL).fingerprint == (
        key_for(EMAIL).public.fingerprint
    )
    assert time.perf_counter() - t0 < 2.0  # mostly PGPy reading the real key


@pytest.mark.parametrize("shape", [_after_bogus_block, _with_header_line])
def test_a_signature_with_a_long_armor_line_is_judged_quickly(shape) -> None:
    data = b"signed bytes"
    signature = pgp.sign_detached(data, key_for(EMAIL))
    hostile = shape(signature, ": " * 32_768)
    t0 = time.perf_counter()
    pgp.verify_detached(data, hostile, key_for(EMAIL).public)
    assert time.perf_counter() - t0 < QUICK


def test_a_key_with_a_long_but_well_formed_armor_header_still_reads() -> None:
    armored = _with_header_line(key_for(EMAIL).public.armored, "Comment: " + "x: " * 20_000)
    assert pgp.validate_public_key_for(armored, EMAIL).fingerprint == (
        key_for(EMAIL).public.fingerprint
    )


# --- (b) subpackets in signatures inside keys ------------------------------------------------


def test_a_key_signature_with_23000_empty_subpackets_is_refused_quickly() -> None:
    parts = split_packets(key_for(EMAIL).public.armored)
    index = _first_user_id_signature(parts)
    empty = b"\x01\x65"  # length 1: just the type octet (101, private use)
    parts[index] = (
        parts[index][0],
        _signature_with_extra_subpackets(parts[index][1], empty * 23_000),
    )
    hostile = armor(b"".join(packet for _, packet in parts))
    _refused_quickly(hostile, EMAIL, "subpackets")


def test_a_key_signature_with_too_many_small_subpackets_is_refused() -> None:
    parts = split_packets(key_for(EMAIL).public.armored)
    index = _first_user_id_signature(parts)
    extra = b"\x01\x65" * (openpgp_packets.MAX_SUBPACKETS + 1)  # well under the byte cap
    parts[index] = (parts[index][0], _signature_with_extra_subpackets(parts[index][1], extra))
    hostile = armor(b"".join(packet for _, packet in parts))
    _refused_quickly(hostile, EMAIL, f"more than {openpgp_packets.MAX_SUBPACKETS} subpackets")


def test_a_detached_signature_with_too_many_small_subpackets_does_not_verify() -> None:
    data = b"signed bytes"
    signature = pgp.sign_detached(data, key_for(EMAIL))
    packet = openpgp_packets.dearmor(signature, "SIGNATURE")
    extra = b"\x01\x65" * (openpgp_packets.MAX_SUBPACKETS + 1)
    hostile = armor(_signature_with_extra_subpackets(packet, extra), "SIGNATURE")
    with pytest.raises(ValueError, match="subpackets"):
        openpgp_packets.signature_packet(hostile)
    assert not pgp.verify_detached(data, hostile, key_for(EMAIL).public)
    # A few extra ones are harmless: the signature still verifies.
    modest = armor(_signature_with_extra_subpackets(packet, b"\x01\x65" * 4), "SIGNATURE")
    assert pgp.verify_detached(data, modest, key_for(EMAIL).public)


# --- (c) self-signature copies and the RSA exponent -------------------------------------------


def _with_signature_copies(armored: str, copies: int) -> str:
    parts = split_packets(armored)
    index = _first_user_id_signature(parts)
    parts[index + 1 : index + 1] = [parts[index]] * (copies - 1)
    return armor(b"".join(packet for _, packet in parts))


def test_98_copies_of_a_self_signature_are_refused_quickly() -> None:
    hostile = _with_signature_copies(key_for(EMAIL).public.armored, 98)
    _refused_quickly(hostile, EMAIL, "self-signatures")


def test_a_few_copies_of_a_self_signature_are_still_accepted() -> None:
    armored = _with_signature_copies(key_for(EMAIL).public.armored, 3)
    assert pgp.validate_public_key_for(armored, EMAIL).emails == [EMAIL]


@pytest.fixture(scope="module")
def big_exponent_key() -> str:
    """A genuine, self-signed RSA-3072 key whose public exponent has 3,070 bits."""
    key = pgpy.PGPKey.new(PubKeyAlgorithm.RSAEncryptOrSign, 3072)
    material = key._key.keymaterial
    p, q = int(material.p), int(material.q)
    phi = (p - 1) * (q - 1)
    while True:
        e = secrets.randbits(3070) | 1 | (1 << 3069)
        if math.gcd(e, phi) == 1:
            break
    material.e, material.d = MPI(e), MPI(pow(e, -1, phi))
    material._compute_chksum()
    key._key.update_hlen()
    key.add_uid(
        pgpy.PGPUID.new("Big E", email=BIG_E),
        usage={KeyFlags.Sign, KeyFlags.Certify, KeyFlags.EncryptCommunications},
        hashes=[HashAlgorithm.SHA256],
    )
    return str(key.pubkey)


def test_an_rsa_key_with_a_3070_bit_exponent_is_refused_quickly(big_exponent_key: str) -> None:
    _refused_quickly(big_exponent_key, BIG_E, "exponent has 3070 bits")


def test_the_exponent_attack_with_98_self_signature_copies_is_refused_quickly(
    big_exponent_key: str,
) -> None:
    _refused_quickly(_with_signature_copies(big_exponent_key, 98), BIG_E, "RSA public exponent")


def test_check_signature_shape_names_the_problem() -> None:
    data = b"signed bytes"
    signature = pgp.sign_detached(data, key_for(EMAIL))
    pgp.check_signature_shape(signature)  # an honest one passes
    packet = openpgp_packets.dearmor(signature, "SIGNATURE")
    extra = b"\x01\x65" * (openpgp_packets.MAX_SUBPACKETS + 1)
    hostile = armor(_signature_with_extra_subpackets(packet, extra), "SIGNATURE")
    for bad, words in [(hostile, "subpackets"), (": " * 30_000, "no ASCII-armored")]:
        t0 = time.perf_counter()
        with pytest.raises(MMTPError) as caught:
            pgp.check_signature_shape(bad)
        assert time.perf_counter() - t0 < QUICK
        assert caught.value.code == SIGNATURE_INVALID
        assert words in caught.value.message
