"""OpenPGP data shaped like the attacks of issue 11 item 1, built from real keys.

(a) a long armor line of ": " pairs before real armored data; (b) a real key whose
self-signature carries ~23,000 empty unhashed subpackets; (c) an RSA key with a ~3,070-bit
public exponent whose self-signature is repeated 98 times. Each is cheap to make and was
slow for a PGPy-based server to parse or check.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time

from cryptography.hazmat.primitives.asymmetric import rsa
from helpers import armor, split_packets

# RFC 8017 §9.2: the DER DigestInfo prefix of SHA-256.
_SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")


def bogus_armor_line(armored: str, total_chars: int) -> str:
    """`armored` after a fake armor block whose one header line is ": " pairs, `total_chars`
    long in all: the old armor regex backtracked quadratically over such a line."""
    kind = armored.strip().splitlines()[0]
    pairs = max(1, (total_chars - len(armored) - len(kind) - 4) // 2)
    return f"{kind}\n{': ' * pairs}\n{armored}"


def _new_packet(tag: int, body: bytes) -> bytes:
    return bytes([0xC0 | tag, 0xFF]) + len(body).to_bytes(4, "big") + body


def _body(packet: bytes) -> bytes:
    """The body of one new- or old-format packet (with its header stripped)."""
    first = packet[0]
    if first & 0x40:
        o1 = packet[1]
        if o1 < 192:
            return packet[2:]
        if o1 < 224:
            return packet[3:]
        return packet[6:]
    size = (1, 2, 4)[first & 0x03]
    return packet[1 + size :]


def empty_subpackets_key(armored: str, count: int = 23_000) -> str:
    """The key with `count` empty (type-only) unhashed subpackets on its first signature;
    still a valid key, since the unhashed area is not signed."""
    out = []
    padded = False
    for tag, packet in split_packets(armored):
        if tag == 2 and not padded:
            body = _body(packet)
            hashed_end = 6 + int.from_bytes(body[4:6], "big")
            unhashed_len = int.from_bytes(body[hashed_end : hashed_end + 2], "big")
            original = body[hashed_end + 2 : hashed_end + 2 + unhashed_len]
            rest = body[hashed_end + 2 + unhashed_len :]
            # Length 1 (the type byte alone), type 101 (private/experimental).
            unhashed = original + b"\x01\x65" * count
            assert len(unhashed) < 65536
            body = body[:hashed_end] + len(unhashed).to_bytes(2, "big") + unhashed + rest
            packet = _new_packet(2, body)
            padded = True
        out.append(packet)
    return armor(b"".join(out))


def _mpi(value: int) -> bytes:
    return value.bit_length().to_bytes(2, "big") + value.to_bytes(
        (value.bit_length() + 7) // 8, "big"
    )


def huge_exponent_key(email: str, *, exponent_bits: int = 3070, copies: int = 98) -> str:
    """An RSA-2048 key whose public exponent has `exponent_bits` bits, with a valid positive
    certification of its user id repeated `copies` times (usable for signing and
    encryption, so only its cost is wrong)."""
    numbers = rsa.generate_private_key(65537, 2048).private_numbers()
    p, q = numbers.p, numbers.q
    n, phi = p * q, (p - 1) * (q - 1)
    while True:
        e = secrets.randbits(exponent_bits) | (1 << (exponent_bits - 1)) | 1
        if math.gcd(e, phi) == 1:
            break
    d = pow(e, -1, phi)
    created = int(time.time()) - 60
    key_body = b"\x04" + created.to_bytes(4, "big") + b"\x01" + _mpi(n) + _mpi(e)
    fingerprint = hashlib.sha1(b"\x99" + len(key_body).to_bytes(2, "big") + key_body).digest()
    uid = f"Mallory <{email}>".encode()
    hashed = (
        bytes([5, 2])
        + created.to_bytes(4, "big")  # signature creation time
        + bytes([2, 27, 0x0F])  # key flags: certify, sign, encrypt
        + bytes([22, 33, 4])
        + fingerprint  # issuer fingerprint
    )
    head = bytes([4, 0x13, 1, 8]) + len(hashed).to_bytes(2, "big") + hashed
    to_hash = (
        b"\x99"
        + len(key_body).to_bytes(2, "big")
        + key_body
        + b"\xb4"
        + len(uid).to_bytes(4, "big")
        + uid
        + head
        + b"\x04\xff"
        + len(head).to_bytes(4, "big")
    )
    digest = hashlib.sha256(to_hash).digest()
    k = (n.bit_length() + 7) // 8
    encoded = _SHA256_PREFIX + digest
    em = b"\x00\x01" + b"\xff" * (k - len(encoded) - 3) + b"\x00" + encoded
    s = pow(int.from_bytes(em, "big"), d, n)
    unhashed = bytes([9, 16]) + fingerprint[-8:]  # issuer key id
    sig_body = head + len(unhashed).to_bytes(2, "big") + unhashed + digest[:2] + _mpi(s)
    packets = _new_packet(6, key_body) + _new_packet(13, uid)
    packets += _new_packet(2, sig_body) * copies
    return armor(packets)


def _check() -> None:  # pragma: no cover - a manual look: python tests/attack_keys.py
    from helpers import public_armored

    from mmtp_proto import pgp

    for name, text in (
        ("empty subpackets", empty_subpackets_key(public_armored("(bob)%(localhost)"))),
        ("huge exponent", huge_exponent_key("(mallory)%(localhost)")),
    ):
        started = time.perf_counter()
        try:
            pgp.validate_public_key_for(text, "(mallory)%(localhost)")
            verdict = "valid"
        except Exception as exc:
            verdict = str(exc)[:100]
        print(name, len(text), f"{time.perf_counter() - started:.2f}s", verdict)


if __name__ == "__main__":
    _check()
