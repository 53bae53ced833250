"""Key renewal (SPEC §5): merge a newly offered copy of a registered key into the stored one.

A copy with the same primary key is merged without AUTH: the result holds every packet of
both copies (so a revocation or a newer self-signature is never dropped), and it is accepted
only when it carries a valid self-signature newer than every one in the stored copy — which
only the holder of the private key can make. A copy that adds nothing newer changes nothing.

The merge itself works on packets (`openpgp_packets`), without PGPy; judging signatures uses
the PGPy adapter's own verifier (`pgp_validity`), so this module is part of that adapter.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pgpy.constants import SignatureType

from . import openpgp_packets as op
from .pgp import PublicKey
from .pgp_validity import _CERTIFICATIONS, _analyze, _issued_elsewhere, _sig_created, _Verifier

TRUST = 12
_COMPONENTS = frozenset({op.USER_ID, op.USER_ATTRIBUTE, op.PUBLIC_SUBKEY})
_KIND = "PUBLIC KEY BLOCK"


@dataclass
class _Key:
    primary: bytes
    direct: list[bytes] = field(default_factory=list)
    # (tag, body) of each user id, user attribute and subkey, with its signatures.
    components: dict[tuple[int, bytes], list[bytes]] = field(default_factory=dict)


def _parse(armored: str) -> _Key:
    data = op.dearmor(armored, _KIND)
    found = op.packets(data)
    if not found or found[0][0] != op.PUBLIC_KEY:
        raise ValueError("it does not start with a public key packet")
    key = _Key(data[found[0][1] : found[0][1] + found[0][2]])
    signatures = key.direct
    for tag, start, length in found[1:]:
        body = data[start : start + length]
        if tag == op.SIGNATURE:
            signatures.append(body)
        elif tag in _COMPONENTS:
            signatures = key.components.setdefault((tag, body), [])
        elif tag == op.PUBLIC_KEY:
            raise ValueError("it holds more than one key")
        elif tag != TRUST:  # GnuPG's local trust packets are not part of a key
            raise ValueError(f"it holds a packet (tag {tag}) that has no place in a public key")
    return key


def fingerprint_of(primary: bytes) -> str | None:
    """The v4 fingerprint of a primary key packet body, or None for another version."""
    if primary[:1] != b"\x04":
        return None
    material = b"\x99" + len(primary).to_bytes(2, "big") + primary
    return hashlib.sha1(material, usedforsecurity=False).hexdigest().upper()


def primary_fingerprint(armored: str) -> str | None:
    """The fingerprint of an armored public key's primary key, read from its packets only;
    None when it is not a readable v4 public key."""
    try:
        return fingerprint_of(_parse(armored).primary)
    except ValueError:
        return None


def _union(first: list[bytes], second: list[bytes]) -> list[bytes]:
    return list(dict.fromkeys(first + second))


def merge(stored: str, offered: str) -> str:
    """Both copies' packets, the stored copy's order first; ValueError if the primary keys
    differ or a copy is not a public key."""
    old, new = _parse(stored), _parse(offered)
    if old.primary != new.primary:
        raise ValueError("the two copies have different primary keys")
    merged = _Key(old.primary, _union(old.direct, new.direct), dict(old.components))
    for component, signatures in new.components.items():
        merged.components[component] = _union(merged.components.get(component, []), signatures)
    out = bytearray(_packet(op.PUBLIC_KEY, merged.primary))
    for sig in merged.direct:
        out += _packet(op.SIGNATURE, sig)
    for (tag, body), signatures in merged.components.items():
        out += _packet(tag, body)
        for sig in signatures:
            out += _packet(op.SIGNATURE, sig)
    return armor(bytes(out))


def _packet(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 192:
        length = bytes([n])
    elif n < 8384:
        length = bytes([((n - 192) >> 8) + 192, (n - 192) & 0xFF])
    else:
        length = b"\xff" + n.to_bytes(4, "big")
    return bytes([0xC0 | tag]) + length + body


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def armor(data: bytes) -> str:
    text = base64.b64encode(data).decode("ascii")
    body = "\n".join(text[i : i + 64] for i in range(0, len(text), 64))
    crc = base64.b64encode(_crc24(data).to_bytes(3, "big")).decode("ascii")
    return f"-----BEGIN PGP {_KIND}-----\n\n{body}\n={crc}\n-----END PGP {_KIND}-----\n"


# --- judging the merged key --------------------------------------------------------------------


def _self_signatures(key: Any) -> Iterator[tuple[Any, Any]]:
    """(signature, what it is over) for each signature the primary key made on its own key."""
    for sig in key._signatures:
        if not _issued_elsewhere(sig, key):
            yield sig, key
    for uid in key.userids:
        for sig in uid._signatures:
            certifies = sig.type in _CERTIFICATIONS or sig.type == SignatureType.CertRevocation
            if certifies and not _issued_elsewhere(sig, key):
                yield sig, uid
    for sub in key.subkeys.values():
        for sig in sub._signatures:
            if sig.type in {SignatureType.Subkey_Binding, SignatureType.SubkeyRevocation}:
                yield sig, sub


def renews(stored: PublicKey, merged: PublicKey, now: datetime) -> bool:
    """Does `merged` carry a valid self-signature newer than every one in `stored`?"""
    dates = [_sig_created(sig) for sig, _ in _self_signatures(stored._key)]
    newest = max((d for d in dates if d is not None), default=None)
    key = merged._key
    verifier = _Verifier(key)
    for sig, subject in _self_signatures(key):
        created = _sig_created(sig)
        if created is None or (newest is not None and created <= newest):
            continue
        if verifier.problem(key, sig, subject, now) is None:
            return True
    return False


def revocation(key: PublicKey, now: datetime) -> str | None:
    """ "valid" when the key's owner revoked it, "broken" when it carries a revocation that
    does not verify, None when it carries none."""
    state = _analyze(_Verifier(key._key), now)
    if not state.revoked:
        return None
    return "broken" if state.broken_revocation else "valid"
