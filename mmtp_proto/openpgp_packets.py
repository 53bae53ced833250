"""A cheap look at OpenPGP data before PGPy parses it: de-armoring and a packet census.

PGPy parses and checks everything it is given, in pure Python, on the server's only thread. A
valid key carrying hundreds of user ids, or a signature padded with kilobytes of subpackets,
costs seconds there. Counting packet headers costs microseconds, so shapes no honest client
sends are refused before PGPy sees them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections import Counter

SIGNATURE = 2
SECRET_KEY = 5
PUBLIC_KEY = 6
SECRET_SUBKEY = 7
USER_ID = 13
PUBLIC_SUBKEY = 14
USER_ATTRIBUTE = 17
_KEY_TAGS = (PUBLIC_KEY, SECRET_KEY)
_SUBKEY_TAGS = (PUBLIC_SUBKEY, SECRET_SUBKEY)

# Generous for real keys (GnuPG makes 1 user id, 1-3 subkeys, a signature on each), far below
# what makes validation slow.
MAX_USER_IDS = 32
MAX_SUBKEYS = 32
MAX_KEY_SIGNATURES = 256
MAX_KEY_PACKETS = 400
# Self-signatures on one user id or subkey: a key renewed every year for decades has a few
# dozen; 98 copies of one cost PGPy 0.7 s per request.
MAX_SELF_SIGNATURES = 32
# A v4 signature's subpacket areas: GnuPG's hold under 100 bytes and about 10 subpackets
# (an embedded back-signature adds one of ~550 bytes). ~23,000 empty ones cost PGPy 14 s.
MAX_SUBPACKET_BYTES = 2048
MAX_SUBPACKETS = 64
# Real RSA keys use e = 65537 (17 bits); a huge exponent makes every verification slow.
MAX_RSA_EXPONENT_BITS = 32
MAX_RSA_MODULUS_BITS = 16384


# --- armor (RFC 9580 §6.2) ------------------------------------------------------------------
# Read line by line, each line looked at a bounded number of times: a regex over armor
# headers backtracked quadratically on a 64 KiB line of ": " pairs (20 s of server time).


def _is_armor_header(line: str) -> bool:
    key, separator, _ = line.partition(": ")
    return bool(separator) and bool(key.strip())


def _armor_body(text: str, kind: str) -> str | None:
    """The base64 text of the first well-formed `kind` armor block, or None."""
    begin, end = f"-----BEGIN PGP {kind}-----", f"-----END PGP {kind}-----"
    lines = text.split("\n")
    i, count = 0, len(lines)
    while i < count:
        if lines[i].rstrip(" \t\r") != begin:
            i += 1
            continue
        i += 1
        while i < count and _is_armor_header(lines[i]):
            i += 1
        if i >= count or lines[i].strip(" \t\r"):
            continue  # no blank line after the headers: not a block; look on from here
        i += 1
        body: list[str] = []
        while i < count:
            line = lines[i].strip(" \t\r")
            if line == end:
                return "".join(body)
            if (
                len(line) == 5
                and line.startswith("=")
                and i + 1 < count
                and lines[i + 1].strip(" \t\r") == end
            ):
                return "".join(body)  # the CRC-24 line
            if line.startswith("-----"):
                break  # another armor line (perhaps a BEGIN): look on from it
            body.append("".join(line.split()))
            i += 1
    return None


def dearmor(text: str, kind: str) -> bytes:
    """The binary data inside the first `kind` armor block (e.g. "SIGNATURE").

    Linear in the length of `text`. The CRC24 footer is not checked: RFC 9580 §6.1 says it
    must not decide acceptance, and the data's own signatures are what protect it.
    """
    body = _armor_body(text, kind)
    if body is None:
        raise ValueError(f"no ASCII-armored OpenPGP {kind.lower()} found")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the {kind.lower()} armor is not valid base64") from None


def packets(data: bytes) -> list[tuple[int, int, int]]:
    """(tag, body offset, body length) of each packet; ValueError if the framing is broken."""
    found: list[tuple[int, int, int]] = []
    i, end = 0, len(data)
    while i < end:
        first = data[i]
        if not first & 0x80:
            raise ValueError("not OpenPGP packet data")
        if first & 0x40:  # new format
            tag = first & 0x3F
            if i + 1 >= end:
                raise ValueError("truncated packet header")
            o1 = data[i + 1]
            if o1 < 192:
                length, header = o1, 2
            elif o1 < 224:
                if i + 2 >= end:
                    raise ValueError("truncated packet header")
                length, header = ((o1 - 192) << 8) + data[i + 2] + 192, 3
            elif o1 == 255:
                if i + 5 >= end:
                    raise ValueError("truncated packet header")
                length, header = int.from_bytes(data[i + 2 : i + 6], "big"), 6
            else:
                raise ValueError("partial-length packets have no place in keys or signatures")
        else:  # old format
            tag = (first >> 2) & 0x0F
            size = (1, 2, 4, 0)[first & 0x03]
            if size == 0:
                raise ValueError("indeterminate-length packets are not accepted here")
            if i + size >= end:
                raise ValueError("truncated packet header")
            length, header = int.from_bytes(data[i + 1 : i + 1 + size], "big"), 1 + size
        start = i + header
        if start + length > end:
            raise ValueError("a packet runs past the end of the data")
        found.append((tag, start, length))
        i = start + length
    return found


# --- inside packets ---------------------------------------------------------------------------


def _mpi(body: bytes, at: int) -> tuple[int, int]:
    """(value, offset after it) of the multiprecision integer at `at`."""
    if at + 2 > len(body):
        raise ValueError("a key packet is truncated")
    end = at + 2 + (int.from_bytes(body[at : at + 2], "big") + 7) // 8
    if end > len(body):
        raise ValueError("a key packet is truncated")
    return int.from_bytes(body[at + 2 : end], "big"), end


def _oid_then_mpi(body: bytes, at: int) -> int:
    if at >= len(body):
        raise ValueError("a key packet is truncated")
    return _mpi(body, at + 1 + body[at])[1]


def _public_part(body: bytes) -> bytes | None:
    """The public part of a v4 key packet (all of a public key packet), checking RSA numbers;
    None for algorithms whose layout is not known here (PGPy refuses those later)."""
    if body[:1] != b"\x04":
        raise ValueError("only OpenPGP version 4 keys are accepted")
    if len(body) < 6:
        raise ValueError("a key packet is truncated")
    algorithm, at = body[5], 6
    if algorithm in (1, 2, 3):  # RSA
        modulus, at = _mpi(body, at)
        exponent, at = _mpi(body, at)
        if exponent.bit_length() > MAX_RSA_EXPONENT_BITS:
            raise ValueError(
                f"its RSA public exponent has {exponent.bit_length()} bits; real keys use "
                f"65537, and more than {MAX_RSA_EXPONENT_BITS} bits is not accepted"
            )
        if modulus.bit_length() > MAX_RSA_MODULUS_BITS:
            raise ValueError(f"its RSA modulus is over {MAX_RSA_MODULUS_BITS} bits")
    elif algorithm in (16, 17):  # Elgamal (p, g, y), DSA (p, q, g, y)
        for _ in range(3 if algorithm == 16 else 4):
            at = _mpi(body, at)[1]
    elif algorithm in (19, 22):  # ECDSA, EdDSA: curve OID, point
        at = _oid_then_mpi(body, at)
    elif algorithm == 18:  # ECDH: curve OID, point, KDF parameters
        at = _oid_then_mpi(body, at)
        at += 1 + (body[at] if at < len(body) else 0)
    else:
        return None
    if at > len(body):
        raise ValueError("a key packet is truncated")
    return body[:at]


def _key_ids(body: bytes) -> frozenset[bytes]:
    """The v4 fingerprint and key id of a key packet (empty if its layout is unknown)."""
    public = _public_part(body)
    if public is None:
        return frozenset()
    fingerprint = hashlib.sha1(b"\x99" + len(public).to_bytes(2, "big") + public).digest()
    return frozenset({fingerprint, fingerprint[-8:]})


def _subpacket_issuers(area: bytes) -> tuple[int, set[bytes]]:
    """(number of subpackets, issuer key ids and fingerprints named) of one subpacket area."""
    count, issuers, i = 0, set(), 0
    while i < len(area):
        first = area[i]
        if first < 192:
            length, i = first, i + 1
        elif first < 255:
            if i + 1 >= len(area):
                raise ValueError("a signature subpacket is truncated")
            length, i = ((first - 192) << 8) + area[i + 1] + 192, i + 2
        else:
            length, i = int.from_bytes(area[i + 1 : i + 5], "big"), i + 5
        if length == 0 or i + length > len(area):
            raise ValueError("a signature subpacket is truncated")
        count += 1
        if count > MAX_SUBPACKETS:
            raise ValueError(f"a signature has more than {MAX_SUBPACKETS} subpackets")
        kind = area[i] & 0x7F
        if kind == 16 and length == 9:  # issuer key id
            issuers.add(area[i + 1 : i + 9])
        elif kind == 33 and length == 22:  # issuer fingerprint (v4)
            issuers.add(area[i + 2 : i + 22])
        i += length
    return count, issuers


def _signature_issuers(body: bytes) -> set[bytes]:
    """The issuers a signature names, after checking its subpacket areas are modest."""
    if body[:1] == b"\x03":
        if len(body) < 19:
            raise ValueError("truncated signature")
        return {body[7:15]}
    if body[:1] != b"\x04":
        raise ValueError("unsupported signature version")
    if len(body) < 6:
        raise ValueError("truncated signature")
    hashed = int.from_bytes(body[4:6], "big")
    if 6 + hashed + 2 > len(body):
        raise ValueError("truncated signature")
    unhashed = int.from_bytes(body[6 + hashed : 8 + hashed], "big")
    if 8 + hashed + unhashed > len(body):
        raise ValueError("truncated signature")
    if hashed + unhashed > MAX_SUBPACKET_BYTES:
        raise ValueError("the signature's subpackets are implausibly large")
    count, issuers = _subpacket_issuers(body[6 : 6 + hashed])
    more, named = _subpacket_issuers(body[8 + hashed : 8 + hashed + unhashed])
    if count + more > MAX_SUBPACKETS:
        raise ValueError(f"a signature has more than {MAX_SUBPACKETS} subpackets")
    return issuers | named


def check_key_shape(text: str) -> bytes:
    """The key's packets, de-armored, once they are known to be shaped like a real key's: not
    too many packets, user ids, subkeys, signatures or self-signature copies, no bloated
    signatures, no odd RSA numbers. Hand PGPy these bytes, never the text: its own armor
    regex is the quadratic one this module replaces."""
    secret = "-----BEGIN PGP PRIVATE KEY BLOCK-----" in text
    data = dearmor(text, "PRIVATE KEY BLOCK" if secret else "PUBLIC KEY BLOCK")
    found = packets(data)
    counts = Counter(tag for tag, _, _ in found)
    if counts[USER_ID] + counts[USER_ATTRIBUTE] > MAX_USER_IDS:
        raise ValueError(f"it has more than {MAX_USER_IDS} user ids")
    if counts[PUBLIC_SUBKEY] + counts[SECRET_SUBKEY] > MAX_SUBKEYS:
        raise ValueError(f"it has more than {MAX_SUBKEYS} subkeys")
    if counts[SIGNATURE] > MAX_KEY_SIGNATURES:
        raise ValueError(f"it carries more than {MAX_KEY_SIGNATURES} signatures")
    if len(found) > MAX_KEY_PACKETS:
        raise ValueError(f"it has more than {MAX_KEY_PACKETS} packets")
    primary: frozenset[bytes] = frozenset()
    self_signatures = 0
    for tag, start, length in found:
        body = data[start : start + length]
        if tag in _KEY_TAGS or tag in _SUBKEY_TAGS:
            ids = _key_ids(body)
            primary = ids if tag in _KEY_TAGS else primary
        if tag in _KEY_TAGS or tag in _SUBKEY_TAGS or tag in (USER_ID, USER_ATTRIBUTE):
            self_signatures = 0
        elif tag == SIGNATURE:
            issuers = _signature_issuers(body)
            # No issuer named: it may still be the key's own, and PGPy checks it as such.
            if not issuers or issuers & primary or not primary:
                self_signatures += 1
                if self_signatures > MAX_SELF_SIGNATURES:
                    raise ValueError(
                        f"one of its user ids or subkeys carries more than "
                        f"{MAX_SELF_SIGNATURES} self-signatures; export the key with "
                        "`gpg --export-options export-clean --export`"
                    )
    return data


def signature_packet(text: str) -> bytes:
    """The one signature packet of a detached signature, with modest subpacket areas."""
    data = dearmor(text, "SIGNATURE")
    found = packets(data)
    if len(found) != 1 or found[0][0] != SIGNATURE:
        raise ValueError("a detached signature is exactly one signature packet")
    _, start, length = found[0]
    _signature_issuers(data[start : start + length])
    return data


def material_digest(text: str, kind: str = "PUBLIC KEY BLOCK") -> str:
    """A digest of the packets in a key, independent of their order and of header formats.

    Two exports of one key can list the same user ids and signatures in another order (PGPy
    reorders user ids when it re-armors); they still hold the identical key.
    """
    data = dearmor(text, kind)
    parts = sorted(
        bytes([tag]) + data[start : start + length] for tag, start, length in packets(data)
    )
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    return digest.hexdigest()
