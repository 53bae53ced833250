"""Issue 11 attack 3: a small encrypted message that expands to hundreds of MiB when opened.

PGPy decompresses everything before anyone checks a size; `pgp.decrypt` now stops one byte
past its cap while decompressing.
"""

from __future__ import annotations

import binascii
import bz2
import time
import tracemalloc
import zlib

import pgpy
import pytest
from helpers import armor, key_for
from pgpy.constants import CompressionAlgorithm, SymmetricKeyAlgorithm
from pgpy.packet.packets import IntegrityProtectedSKEDataV1, PKESessionKeyV3

from mmtp_proto import openpgp_message, openpgp_packets, pgp
from mmtp_proto.errors import LocalError

pytestmark = pytest.mark.secure

EMAIL = "(bombed)%(example.com)"
MIB = 1 << 20
# Old-format packet headers with an indeterminate length (as GnuPG streams them).
_LITERAL_STREAM = b"\xaf" + b"b\x00" + b"\x00\x00\x00\x00"
_COMPRESSED_STREAM = b"\xa3"


def _compressed_packet(algorithm: int, size: int, inner: bytes | None = None) -> bytes:
    """A compressed-data packet holding a literal packet of `size` zero bytes, or `inner`.

    Deflate output after a full flush does not depend on what came before, so one
    compressed MiB of zeros is repeated: a 512 MiB bomb costs milliseconds to build.
    """
    data = inner if inner is not None else _LITERAL_STREAM
    if algorithm == 3:
        bz = bz2.BZ2Compressor(9)
        parts = [bz.compress(data)] + [bz.compress(bytes(MIB)) for _ in range(size // MIB)]
        return _COMPRESSED_STREAM + bytes([algorithm]) + b"".join(parts) + bz.flush()
    zc = zlib.compressobj(9, zlib.DEFLATED, -15 if algorithm == 1 else 15)
    head = zc.compress(data) + zc.flush(zlib.Z_FULL_FLUSH)
    mib = zc.compress(bytes(MIB)) + zc.flush(zlib.Z_FULL_FLUSH)
    # (For ZLIB the final checksum then covers one MiB only; decompression stops long before.)
    body = head + mib * (size // MIB) + zc.flush()
    return _COMPRESSED_STREAM + bytes([algorithm]) + body


def _encrypt_packets(packets: bytes, recipient: pgp.PublicKey) -> str:
    """Encrypt raw packet bytes to `recipient`, as any OpenPGP sender could."""
    cipher = SymmetricKeyAlgorithm.AES256
    session_key = cipher.gen_key()
    data = IntegrityProtectedSKEDataV1()
    data.encrypt(session_key, cipher, packets)
    message = pgpy.PGPMessage()
    message |= data
    target = recipient._state(None).encryption_keys(recipient._key, None)[0]
    pkesk = PKESessionKeyV3()
    pkesk.encrypter = bytearray(binascii.unhexlify(target.fingerprint.keyid.encode("ascii")))
    pkesk.pkalg = target.key_algorithm
    pkesk.encrypt_sk(target._key, cipher, session_key)
    message |= pkesk
    return str(message)


def _refused_with_little_memory(armored: str) -> LocalError:
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(LocalError) as caught:
            pgp.decrypt(armored, key_for(EMAIL))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 2.0
    assert peak < 3 * pgp.DEFAULT_MAX_PLAINTEXT_BYTES, f"peak {peak / MIB:.0f} MiB"
    return caught.value


@pytest.mark.parametrize(
    ("algorithm", "size"),
    [(1, 64 * MIB), (2, 64 * MIB), (3, 32 * MIB)],
    ids=["zip", "zlib", "bzip2"],
)
def test_a_compressed_bomb_is_refused_before_it_expands(algorithm: int, size: int) -> None:
    bomb = _encrypt_packets(_compressed_packet(algorithm, size), key_for(EMAIL).public)
    assert len(bomb) < 200_000  # small on the wire
    error = _refused_with_little_memory(bomb)
    assert "decompression bomb" in str(error)


def test_the_512_mib_bomb_from_the_report_is_refused() -> None:
    bomb = _encrypt_packets(_compressed_packet(1, 512 * MIB), key_for(EMAIL).public)
    assert len(bomb) < 1_000_000
    assert "decompression bomb" in str(_refused_with_little_memory(bomb))


def test_nested_compression_is_refused() -> None:
    inner = _compressed_packet(1, 2 * MIB)
    nested = _compressed_packet(1, 0, inner=inner)
    error = _refused_with_little_memory(_encrypt_packets(nested, key_for(EMAIL).public))
    assert "nests compressed data" in str(error)


def test_the_cap_is_a_parameter() -> None:
    armored = _encrypt_packets(_compressed_packet(2, 1 * MIB), key_for(EMAIL).public)
    assert pgp.decrypt(armored, key_for(EMAIL)) == bytes(MIB)
    with pytest.raises(LocalError, match="more than 1000 bytes"):
        pgp.decrypt(armored, key_for(EMAIL), max_bytes=1000)


@pytest.mark.parametrize(
    "compression",
    [CompressionAlgorithm.ZIP, CompressionAlgorithm.ZLIB, CompressionAlgorithm.BZ2],
)
def test_an_honest_compressed_message_still_opens(compression) -> None:
    text = b'{"subject":"s","body":"' + b"hello " * 1000 + b'"}'
    literal = pgpy.PGPMessage.new(text, format="b", compression=compression)
    armored = _encrypt_packets(bytes(literal), key_for(EMAIL).public)
    assert pgp.decrypt(armored, key_for(EMAIL)) == text


def test_an_uncompressed_literal_larger_than_the_cap_is_refused() -> None:
    literal = pgpy.PGPMessage.new(bytes(2000), format="b")
    armored = _encrypt_packets(bytes(literal), key_for(EMAIL).public)
    with pytest.raises(LocalError, match="more than 1000 bytes"):
        pgp.decrypt(armored, key_for(EMAIL), max_bytes=1000)


def test_partial_body_lengths_are_read() -> None:
    # 512-byte partial chunks, then a final 5-byte length: how streaming senders write.
    body = b"b\x00\x00\x00\x00\x00" + b"x" * 1024
    packet = b"\xcb" + b"\xe9" + body[:512] + b"\xe9" + body[512:1024] + b"\x06" + body[1024:]
    assert openpgp_message.literal_data(packet, 10_000) == b"x" * 1024


def test_a_message_with_thousands_of_session_key_packets_is_refused_before_parsing() -> None:
    honest = pgp.encrypt(b"x", [key_for(EMAIL).public])
    data = openpgp_packets.dearmor(honest, "MESSAGE")
    assert data[0] == 0xC1 and data[1] < 192, "expects a short session-key packet first"
    pkesk = data[: 2 + data[1]]
    hostile = armor(pkesk * 5000 + data, "MESSAGE")
    t0 = time.perf_counter()
    with pytest.raises(LocalError, match="more than 256 packets"):
        pgp.decrypt(hostile, key_for(EMAIL))
    assert time.perf_counter() - t0 < 1.0
