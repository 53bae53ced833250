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
import re
from collections import Counter

SIGNATURE = 2
SECRET_KEY = 5
PUBLIC_KEY = 6
SECRET_SUBKEY = 7
USER_ID = 13
PUBLIC_SUBKEY = 14
USER_ATTRIBUTE = 17

# Generous for real keys (GnuPG makes 1 user id, 1-3 subkeys, a signature on each), far below
# what makes validation slow.
MAX_USER_IDS = 32
MAX_SUBKEYS = 32
MAX_KEY_SIGNATURES = 256
MAX_KEY_PACKETS = 400
# A v4 signature's subpacket areas: GnuPG's hold under 100 bytes.
MAX_SUBPACKET_BYTES = 2048

_ARMOR = re.compile(
    r"-----BEGIN PGP (?P<kind>[A-Z ,0-9/]+)-----[ \t]*\r?\n"
    r"(?:[^\r\n]+: [^\r\n]*\r?\n)*"  # armor headers (Version:, Comment:, ...)
    r"[ \t]*\r?\n"
    r"(?P<body>[A-Za-z0-9+/=\s]+?)"
    r"(?:\r?\n=[A-Za-z0-9+/]{4})?[ \t]*\r?\n"
    r"-----END PGP (?P=kind)-----"
)


def dearmor(text: str, kind: str) -> bytes:
    """The binary data inside the first `kind` armor block (e.g. "SIGNATURE").

    The CRC24 footer is not checked: RFC 9580 §6.1 says it must not decide acceptance, and the
    data's own signatures are what protect it.
    """
    for match in _ARMOR.finditer(text):
        if match["kind"] == kind:
            try:
                return base64.b64decode("".join(match["body"].split()), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"the {kind.lower()} armor is not valid base64") from None
    raise ValueError(f"no ASCII-armored OpenPGP {kind.lower()} found")


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


def check_key_shape(text: str) -> None:
    """Refuse key data whose packet counts no real key has, before it is parsed."""
    kind = "PRIVATE KEY BLOCK" if "PRIVATE KEY BLOCK" in text else "PUBLIC KEY BLOCK"
    counts = Counter(tag for tag, _, _ in packets(dearmor(text, kind)))
    if counts[USER_ID] + counts[USER_ATTRIBUTE] > MAX_USER_IDS:
        raise ValueError(f"it has more than {MAX_USER_IDS} user ids")
    if counts[PUBLIC_SUBKEY] + counts[SECRET_SUBKEY] > MAX_SUBKEYS:
        raise ValueError(f"it has more than {MAX_SUBKEYS} subkeys")
    if counts[SIGNATURE] > MAX_KEY_SIGNATURES:
        raise ValueError(f"it carries more than {MAX_KEY_SIGNATURES} signatures")
    if sum(counts.values()) > MAX_KEY_PACKETS:
        raise ValueError(f"it has more than {MAX_KEY_PACKETS} packets")


def signature_packet(text: str) -> bytes:
    """The one signature packet of a detached signature, with modest subpacket areas."""
    data = dearmor(text, "SIGNATURE")
    found = packets(data)
    if len(found) != 1 or found[0][0] != SIGNATURE:
        raise ValueError("a detached signature is exactly one signature packet")
    _, start, length = found[0]
    body = data[start : start + length]
    if body[:1] == b"\x04":
        if length < 6:
            raise ValueError("truncated signature")
        hashed = int.from_bytes(body[4:6], "big")
        if 6 + hashed + 2 > length:
            raise ValueError("truncated signature")
        unhashed = int.from_bytes(body[6 + hashed : 8 + hashed], "big")
        if hashed + unhashed > MAX_SUBPACKET_BYTES:
            raise ValueError("the signature's subpackets are implausibly large")
    elif body[:1] != b"\x03":
        raise ValueError("unsupported signature version")
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
