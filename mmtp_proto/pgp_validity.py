"""Whether an OpenPGP key is sound at a given time: self-signatures, user ids, subkey bindings,
back-signatures, revocations and expiry.

Part of the PGPy adapter (with :mod:`mmtp_proto.pgp` and :mod:`mmtp_proto.pgp_speed`), so it may
use PGPy types; nothing outside the adapter imports it. PGPy's ``verify()`` ignores revocation,
expiry and subkey bindings, so every rule is decided here from signatures verified here, reading
only hashed (signed) subpackets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes
from pgpy.constants import (
    EllipticCurveOID,
    HashAlgorithm,
    KeyFlags,
    PubKeyAlgorithm,
    SignatureType,
)
from pgpy.packet.subpackets.types import Opaque as _OpaqueSubpacket

# Clients' clocks run a little ahead; a self-signature made "in the future" by that much is fine.
_CLOCK_SKEW = timedelta(hours=1)
# SHA-1 and older are forgeable or close to it; a signature over them proves nothing.
_STRONG_HASHES = frozenset(
    {HashAlgorithm.SHA224, HashAlgorithm.SHA256, HashAlgorithm.SHA384, HashAlgorithm.SHA512}
)
_ENCRYPT = frozenset({KeyFlags.EncryptCommunications, KeyFlags.EncryptStorage})
_CERTIFICATIONS = frozenset(
    {
        SignatureType.Generic_Cert,
        SignatureType.Persona_Cert,
        SignatureType.Casual_Cert,
        SignatureType.Positive_Cert,
    }
)
_RSA = frozenset(
    {PubKeyAlgorithm.RSAEncryptOrSign, PubKeyAlgorithm.RSAEncrypt, PubKeyAlgorithm.RSASign}
)
_CAN_SIGN = frozenset(
    {PubKeyAlgorithm.RSAEncryptOrSign, PubKeyAlgorithm.RSASign, PubKeyAlgorithm.EdDSA}
)
_CAN_ENCRYPT = frozenset(
    {PubKeyAlgorithm.RSAEncryptOrSign, PubKeyAlgorithm.RSAEncrypt, PubKeyAlgorithm.ECDH}
)
_MIN_RSA_BITS = 2048


# --- user ids and algorithms ------------------------------------------------------------------


def _email_part(userid: str) -> str:
    # "Name (comment) <addr>" → addr; a bare address (`gpg --quick-gen-key ADDR`) is itself.
    text = userid.strip()
    if text.endswith(">") and "<" in text:
        return text[text.rindex("<") + 1 : -1].strip()
    return text


def _name_part(userid: str) -> str:
    text = userid.strip()
    if text.endswith(">") and "<" in text:
        return text[: text.rindex("<")].strip()
    return ""


def _algorithm_name(key: Any) -> str:
    alg = key.key_algorithm
    if alg in _RSA:
        return f"RSA-{key.key_size}"
    if alg in {PubKeyAlgorithm.EdDSA, PubKeyAlgorithm.ECDH, PubKeyAlgorithm.ECDSA}:
        oid = key.key_size
        if oid in {EllipticCurveOID.Ed25519, EllipticCurveOID.Curve25519}:
            return oid.name
        return f"{alg.name}-{getattr(oid, 'name', oid)}"
    if alg in {PubKeyAlgorithm.DSA, PubKeyAlgorithm.ElGamal}:
        return f"{alg.name}-{key.key_size}"
    return getattr(alg, "name", str(alg))


def _algorithm_problem(key: Any) -> str | None:
    alg = key.key_algorithm
    if alg in _RSA:
        bits = key.key_size
        if bits < _MIN_RSA_BITS:
            return f"RSA with {bits} bits is too weak (at least {_MIN_RSA_BITS} bits are needed)"
        return None
    if alg == PubKeyAlgorithm.EdDSA and key.key_size == EllipticCurveOID.Ed25519:
        return None
    if alg == PubKeyAlgorithm.ECDH and key.key_size == EllipticCurveOID.Curve25519:
        return None
    return f"{_algorithm_name(key)} is not accepted (only RSA of 2048+ bits or Ed25519/Curve25519)"


# --- signatures over keys ----------------------------------------------------------------------


def _hashed(sig: Any, name: str) -> list[Any]:
    return sig._signature.subpackets["h_" + name]


def _sig_created(sig: Any) -> datetime | None:
    found = _hashed(sig, "CreationTime")
    return found[-1].created if found else None


def _key_expiry(sig: Any, key: Any) -> datetime | None:
    found = _hashed(sig, "KeyExpirationTime")
    if not found or not found[-1].expires:
        return None
    return key.created + found[-1].expires


def _sig_flags(sig: Any) -> frozenset[KeyFlags] | None:
    found = _hashed(sig, "KeyFlags")
    return frozenset(found[-1].flags) if found else None


def _default_flags(key: Any) -> frozenset[KeyFlags]:
    # No KeyFlags subpacket: the key may do whatever its algorithm can (RFC 4880 §5.2.3.21).
    flags: set[KeyFlags] = set()
    if key.key_algorithm in _CAN_SIGN:
        flags |= {KeyFlags.Sign, KeyFlags.Certify}
    if key.key_algorithm in _CAN_ENCRYPT:
        flags |= _ENCRYPT
    return frozenset(flags)


def _signer_keyid(sig: Any) -> str:
    # Only a hint (the Issuer subpacket may sit in the unsigned area, or be missing).
    try:
        return str(sig.signer or "").upper()
    except Exception:
        found = _hashed(sig, "IssuerFingerprint")
        return str(found[-1].issuer_fingerprint).replace(" ", "").upper()[-16:] if found else ""


def _issued_elsewhere(sig: Any, key: Any) -> bool:
    # Skips third-party certifications, which are none of our business.
    signer = _signer_keyid(sig)
    return bool(signer) and signer != _fingerprint(key)[-16:]


class _Verifier:
    """Checks signatures by a key's own parts, remembering the (costly) cryptographic results."""

    def __init__(self, key: Any) -> None:
        self.key = key
        self._memo: dict[tuple[int, int], str | None] = {}

    def problem(self, signer: Any, sig: Any, subject: Any, now: datetime) -> str | None:
        """None if `sig` is a sound signature by `signer` over `subject` at `now`, else why not."""
        created = _sig_created(sig)
        if created is None:
            return "it has no signed creation time"
        if created > now + _CLOCK_SKEW:
            return "it is dated in the future"
        lifetime = _hashed(sig, "SignatureExpirationTime")
        if lifetime and lifetime[-1].expires and created + lifetime[-1].expires <= now:
            return "it has expired"
        memo_key = (id(sig), id(signer))
        if memo_key not in self._memo:
            self._memo[memo_key] = _crypto_problem(signer, sig, subject)
        return self._memo[memo_key]


def _crypto_problem(signer: Any, sig: Any, subject: Any) -> str | None:
    try:
        if sig.hash_algorithm not in _STRONG_HASHES:
            return f"it uses the weak hash {sig.hash_algorithm.name}"
        if sig.key_algorithm != signer.key_algorithm:
            return "it was made by another key"
        for sub in sig._signature.subpackets._hashed_sp.values():
            if sub.header.critical and isinstance(sub, _OpaqueSubpacket):
                return "it carries a critical part this software does not understand"
        verified = signer._key.keymaterial.verify(
            sig.hashdata(subject), sig.__sig__, getattr(hashes, sig.hash_algorithm.name)()
        )
    except Exception:
        verified = False
    return None if verified is True else "the signature does not match (damaged or by another key)"


# --- what a key is worth at a given time -------------------------------------------------------


@dataclass
class _UserId:
    userid: str
    email: str
    created: datetime | None  # of the newest sound self-certification
    problem: str | None  # why it cannot be used; None if it can


@dataclass
class _Subkey:
    key: Any
    flags: frozenset[KeyFlags]
    expires: datetime | None
    revoked: bool
    problem: str | None  # binding problem: the subkey is not really part of this key


@dataclass
class _State:
    revoked: bool
    broken_revocation: bool
    userids: list[_UserId]
    has_self_signature: bool
    primary_flags: frozenset[KeyFlags]
    expires: datetime | None
    subkeys: list[_Subkey]

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and self.expires <= now

    def primary_live(self, now: datetime) -> bool:
        return self.has_self_signature and not self.revoked and not self.expired(now)

    def live_subkeys(self, now: datetime) -> list[_Subkey]:
        if not self.primary_live(now):
            return []
        alive = [
            s
            for s in self.subkeys
            if s.problem is None and not s.revoked and (s.expires is None or s.expires > now)
        ]
        return sorted(alive, key=lambda s: s.key.created, reverse=True)

    def encryption_keys(self, primary: Any, now: datetime) -> list[Any]:
        """Keys to encrypt to, best first: newest live encryption subkey, then the primary."""
        found = [
            s.key
            for s in self.live_subkeys(now)
            if s.flags & _ENCRYPT
            and s.key.key_algorithm in _CAN_ENCRYPT
            and _algorithm_problem(s.key) is None
        ]
        if (
            self.primary_live(now)
            and self.primary_flags & _ENCRYPT
            and primary.key_algorithm in _CAN_ENCRYPT
        ):
            found.append(primary)
        return found

    def signing_keys(self, primary: Any, now: datetime) -> list[Any]:
        found = []
        if self.primary_live(now) and KeyFlags.Sign in self.primary_flags:
            found.append(primary)
        found += [
            s.key
            for s in self.live_subkeys(now)
            if KeyFlags.Sign in s.flags and s.key.key_algorithm in _CAN_SIGN
        ]
        return [k for k in found if k.key_algorithm in _CAN_SIGN]


def _analyze(verifier: _Verifier, now: datetime) -> _State:
    key = verifier.key
    revocations = [s for s in key._signatures if s.type == SignatureType.KeyRevocation]
    # Any revocation makes the key unusable: a sound one revokes it, and a broken one on a key
    # offered for registration means something is wrong with it (designated revokers included).
    revoked = any(verifier.problem(key, s, key, now) is None for s in revocations)

    newest: tuple[datetime, Any] | None = None
    userids: list[_UserId] = []
    for uid in key.userids:
        best: tuple[datetime, Any] | None = None
        why = "it has no self-signature"
        for sig in uid._signatures:
            if sig.type not in _CERTIFICATIONS or _issued_elsewhere(sig, key):
                continue
            problem = verifier.problem(key, sig, uid, now)
            if problem is not None:
                why = f"its self-signature is not valid: {problem}"
                continue
            created = _sig_created(sig)
            if best is None or created >= best[0]:
                best = (created, sig)
        if best is not None:
            revoked_uid = any(
                sig.type == SignatureType.CertRevocation
                and verifier.problem(key, sig, uid, now) is None
                and _sig_created(sig) >= best[0]
                for sig in uid._signatures
            )
            why = "it was revoked by the key's owner" if revoked_uid else None
            if why is None and (newest is None or best[0] >= newest[0]):
                newest = best
        userid = uid.userid or ""
        userids.append(_UserId(userid, _email_part(userid), best[0] if best else None, why))
    for sig in key._signatures:
        if (
            sig.type == SignatureType.DirectlyOnKey
            and not _issued_elsewhere(sig, key)
            and verifier.problem(key, sig, key, now) is None
        ):
            created = _sig_created(sig)
            if newest is None or created > newest[0]:
                newest = (created, sig)

    flags = _sig_flags(newest[1]) if newest else None
    primary_flags = (flags if flags is not None else _default_flags(key)) | {KeyFlags.Certify}

    subkeys = [_analyze_subkey(verifier, sub, now) for sub in key.subkeys.values()]
    return _State(
        revoked=revoked or bool(revocations),
        broken_revocation=bool(revocations) and not revoked,
        userids=userids,
        has_self_signature=newest is not None,
        primary_flags=primary_flags,
        expires=_key_expiry(newest[1], key) if newest else None,
        subkeys=subkeys,
    )


def _analyze_subkey(verifier: _Verifier, sub: Any, now: datetime) -> _Subkey:
    key = verifier.key
    best: tuple[datetime, Any] | None = None
    why: str | None = "it has no binding signature from the primary key"
    for sig in sub._signatures:
        if sig.type != SignatureType.Subkey_Binding:
            continue
        problem = verifier.problem(key, sig, sub, now)
        if problem is not None:
            why = f"its binding signature is not valid: {problem}"
            continue
        created = _sig_created(sig)
        if best is None or created >= best[0]:
            best = (created, sig)
    if best is None:
        return _Subkey(sub, frozenset(), None, False, why)
    flags = _sig_flags(best[1])
    flags = flags if flags is not None else _default_flags(sub)
    problem = None
    if KeyFlags.Sign in flags and not any(
        sig.type == SignatureType.PrimaryKey_Binding
        and verifier.problem(sub, sig, sub, now) is None
        for sig in sub._signatures
    ):
        # Without the subkey's own signature back, anyone could claim a stranger's signing key.
        problem = "it is marked for signing but lacks a valid back-signature from the subkey"
    revoked = any(s.type == SignatureType.SubkeyRevocation for s in sub._signatures)
    return _Subkey(sub, flags, _key_expiry(best[1], sub), revoked, problem)


def _fingerprint(key: Any) -> str:
    return str(key.fingerprint).replace(" ", "").upper()
