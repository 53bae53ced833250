"""OpenPGP for MMTP (SPEC §3, §5): keys, REGISTER_KEY checks, encryption and signatures.

This is the only module that talks to PGPy 0.6.0, so the library can be swapped later; no PGPy
type appears in a public signature. PGPy parses and computes, but it does not judge keys (its
``verify()`` ignores revocation, expiry and subkey bindings), so every validity rule is decided
here from signatures this module verifies itself, reading only hashed (signed) subpackets.
"""

from __future__ import annotations

import binascii
import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pgpy
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from pgpy.constants import (
    CompressionAlgorithm,
    EllipticCurveOID,
    HashAlgorithm,
    KeyFlags,
    PubKeyAlgorithm,
    SignatureType,
    SymmetricKeyAlgorithm,
)
from pgpy.packet.fields import RSAPriv, String2Key
from pgpy.packet.packets import (
    IntegrityProtectedSKEData,
    IntegrityProtectedSKEDataV1,
    LiteralData,
    PKESessionKeyV3,
    PubKeyV4,
)
from pgpy.packet.subpackets.types import Opaque as _OpaqueSubpacket

from . import openpgp_packets
from .address import normalize_address
from .errors import KEY_INVALID, LocalError, MMTPError

__all__ = [
    "ALGORITHMS",
    "PrivateKey",
    "PublicKey",
    "armored_key_is_protected",
    "decrypt",
    "encrypt",
    "generate_key",
    "sign_detached",
    "validate_public_key_for",
    "verify_detached",
]

ALGORITHMS = ("rsa4096", "rsa3072", "rsa2048", "ed25519")

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
# AES-256 is in every OpenPGP implementation still in use, so preferences need not be negotiated.
_CIPHER = SymmetricKeyAlgorithm.AES256


# --- RSA private keys: validate once, not on every operation ----------------------------------
#
# PGPy's RSAPriv.__privkey__ rebuilds a cryptography key from the raw numbers on every sign or
# decrypt, and cryptography then re-checks the whole key (~0.25 s for RSA-4096, twice per
# decrypt). We build that object once per loaded key, after a full check (or skipping it for a
# key cryptography itself just generated), pin it on the key material, and let the patched
# method hand it back while the numbers are unchanged. Key material we did not prime (anything
# not made by this module) still takes PGPy's original, validating path.

_ORIGINAL_RSA_PRIVKEY = getattr(RSAPriv, "_mmtp_original_privkey", RSAPriv.__privkey__)
_READY_ATTR = "_mmtp_ready_key"


def _rsa_numbers(material: Any) -> tuple[int, ...]:
    return (int(material.n), int(material.e), int(material.d), int(material.p), int(material.q))


def _rsa_privkey(self: Any) -> Any:
    ready = self.__dict__.get(_READY_ATTR)
    if ready is not None and ready[0] == _rsa_numbers(self):
        return ready[1]
    return _ORIGINAL_RSA_PRIVKEY(self)


RSAPriv._mmtp_original_privkey = _ORIGINAL_RSA_PRIVKEY  # type: ignore[attr-defined]
RSAPriv.__privkey__ = _rsa_privkey  # type: ignore[method-assign]


def _prime_rsa(key: Any, *, trusted: bool) -> None:
    for part in (key, *key.subkeys.values()):
        material = part._key.keymaterial
        if not isinstance(material, RSAPriv):
            continue
        if trusted:
            p, q, d = int(material.p), int(material.q), int(material.d)
            crypto_key = rsa.RSAPrivateNumbers(
                p,
                q,
                d,
                rsa.rsa_crt_dmp1(d, p),
                rsa.rsa_crt_dmq1(d, q),
                rsa.rsa_crt_iqmp(p, q),
                rsa.RSAPublicNumbers(int(material.e), int(material.n)),
            ).private_key(unsafe_skip_rsa_key_validation=True)
        else:
            try:
                crypto_key = _ORIGINAL_RSA_PRIVKEY(material)
            except ValueError as exc:
                raise LocalError(
                    f"the private key's RSA numbers are inconsistent ({exc}); the key file is "
                    "damaged or was not made by OpenPGP software"
                ) from exc
        material.__dict__[_READY_ATTR] = (_rsa_numbers(material), crypto_key)


def _copy_primed(source: Any, target: Any) -> None:
    ready = {
        str(part.fingerprint): part._key.keymaterial.__dict__.get(_READY_ATTR)
        for part in (source, *source.subkeys.values())
    }
    for part in (target, *target.subkeys.values()):
        found = ready.get(str(part.fingerprint))
        if found is not None:
            part._key.keymaterial.__dict__[_READY_ATTR] = found


# --- parsing -----------------------------------------------------------------------------------


def _parse_key(text: str) -> Any:
    """Parse exactly one key (public or secret); raise ValueError saying why not."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("it is empty")
    openpgp_packets.check_key_shape(text)
    try:
        key, found = pgpy.PGPKey.from_blob(text)
    except Exception as exc:
        raise ValueError("it is not OpenPGP key data") from exc
    if key._key is None:
        raise ValueError("it holds no key packet")
    if list(found.values()) != [key]:
        raise ValueError("it holds more than one key")
    return key


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


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


_STATE_TTL = timedelta(seconds=60)


def _fingerprint(key: Any) -> str:
    return str(key.fingerprint).replace(" ", "").upper()


# --- public and private keys -------------------------------------------------------------------


class PublicKey:
    """An OpenPGP public key. Make one with `from_armored()` or `PrivateKey.public`."""

    fingerprint: str
    armored: str
    emails: list[str]
    name: str
    algorithm: str
    created: datetime
    expires: datetime | None

    @classmethod
    def from_armored(cls, text: str) -> PublicKey:
        """Read an ASCII-armored public key; KEY_INVALID if it is unreadable or secret."""
        try:
            key = _parse_key(text)
        except ValueError as exc:
            raise MMTPError(
                KEY_INVALID,
                f"the public key could not be read: {exc}. Send one ASCII-armored OpenPGP public "
                "key, as `gpg --armor --export ADDRESS` prints it.",
            ) from None
        if not key.is_public:
            raise MMTPError(
                KEY_INVALID,
                "this is a secret (private) key; never send it to anyone. Send only the public "
                "key, as `gpg --armor --export ADDRESS` prints it.",
            )
        return cls._wrap(key)

    @classmethod
    def _wrap(cls, key: Any) -> PublicKey:
        self = cls.__new__(cls)
        self._key = key
        self._verifier = _Verifier(key)
        self.fingerprint = _fingerprint(key)
        self.armored = str(key)
        self.emails = [_email_part(uid.userid or "") for uid in key.userids]
        self.name = _name_part(key.userids[0].userid or "") if key.userids else ""
        self.algorithm = _algorithm_name(key)
        self.created = key.created
        self._cached_state: tuple[datetime, _State] | None = None
        self._part_fingerprints: dict[int, str] = {}
        self.expires = self._state(None).expires
        return self

    def _state(self, now: datetime | None) -> _State:
        if now is not None:
            return _analyze(self._verifier, _now(now))
        # Analysing a key verifies all its self-signatures; the server asks on every signed
        # SEND. Reuse the verdict for a minute: an expiry is then noticed up to 60 s late.
        current = datetime.now(UTC)
        cached = self._cached_state
        if cached is None or not timedelta(0) <= current - cached[0] <= _STATE_TTL:
            cached = (current, _analyze(self._verifier, current))
            self._cached_state = cached
        return cached[1]

    def _part_fingerprint(self, part: Any) -> str:
        # PGPy hashes the key packet anew for every fingerprint; parts live as long as the key.
        found = self._part_fingerprints.get(id(part))
        if found is None:
            found = self._part_fingerprints[id(part)] = _fingerprint(part)
        return found

    def __repr__(self) -> str:
        return f"PublicKey({self.fingerprint}, {self.algorithm}, {self.emails})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PublicKey):
            return NotImplemented
        return self.armored == other.armored

    def __hash__(self) -> int:
        return hash(self.armored)


class PrivateKey:
    """An OpenPGP secret key, unlocked in memory; `.armored` stays passphrase-protected if set."""

    public: PublicKey
    armored: str
    is_protected: bool

    @classmethod
    def from_armored(cls, text: str, passphrase: str | None = None) -> PrivateKey:
        """Read an ASCII-armored secret key and unlock it once for the life of this object."""
        try:
            key = _parse_key(text)
        except ValueError as exc:
            raise LocalError(f"the private key could not be read: {exc}") from None
        if key.is_public:
            raise LocalError("this is a public key, not a private key; load the secret key file")
        protected = key.is_protected
        if protected:
            if passphrase is None:
                raise LocalError(
                    "the private key is protected by a passphrase; give the passphrase"
                )
            _unlock_in_memory(key, passphrase)
        _prime_rsa(key, trusted=False)
        return cls._wrap(key, text if text.endswith("\n") else text + "\n", protected)

    @classmethod
    def _wrap(cls, key: Any, armored: str, protected: bool) -> PrivateKey:
        self = cls.__new__(cls)
        self._key = key
        self.armored = armored
        self.is_protected = protected
        self.public = PublicKey._wrap(_parse_key(str(key.pubkey)))
        return self

    def with_passphrase(self, new: str | None) -> PrivateKey:
        """A copy whose `.armored` is protected by `new` (None or "" removes the protection)."""
        clone = _parse_key(str(self._key))
        _copy_primed(self._key, clone)
        return PrivateKey._wrap(clone, _export(self._key, new), bool(new))

    def __repr__(self) -> str:
        return (
            f"PrivateKey({self.public.fingerprint}, {self.public.algorithm}, {self.public.emails})"
        )


def armored_key_is_protected(text: str) -> bool:
    """Whether an armored secret key needs a passphrase to load (False for a public key)."""
    try:
        key = _parse_key(text)
    except ValueError as exc:
        raise LocalError(f"the key could not be read: {exc}") from None
    return not key.is_public and key.is_protected


def _unlock_in_memory(key: Any, passphrase: str) -> None:
    # PGPy's unlock() is a context manager that wipes the material on exit; we want the key usable
    # for its whole life, so decrypt each part and then mark it as plain (s2k usage 0) in memory.
    try:
        for part in (key, *key.subkeys.values()):
            packet = part._key
            packet.unprotect(passphrase)
            material = packet.keymaterial
            material.s2k = String2Key()
            material.encbytes = bytearray()
            material._compute_chksum()
            packet.update_hlen()
    except pgpy.errors.PGPDecryptionError:
        raise LocalError("wrong passphrase for the private key") from None
    except Exception as exc:
        raise LocalError(
            f"the private key could not be unlocked ({type(exc).__name__}); it may be damaged "
            "or use a protection scheme this program does not support"
        ) from None


def _export(key: Any, passphrase: str | None) -> str:
    copy = _parse_key(str(key))
    if passphrase:
        copy.protect(passphrase, SymmetricKeyAlgorithm.AES256, HashAlgorithm.SHA256)
    return str(copy)


_KEY_SHAPES: dict[str, tuple[PubKeyAlgorithm, Any, PubKeyAlgorithm, Any]] = {
    "rsa4096": (PubKeyAlgorithm.RSAEncryptOrSign, 4096, PubKeyAlgorithm.RSAEncryptOrSign, 4096),
    "rsa3072": (PubKeyAlgorithm.RSAEncryptOrSign, 3072, PubKeyAlgorithm.RSAEncryptOrSign, 3072),
    "rsa2048": (PubKeyAlgorithm.RSAEncryptOrSign, 2048, PubKeyAlgorithm.RSAEncryptOrSign, 2048),
    "ed25519": (
        PubKeyAlgorithm.EdDSA,
        EllipticCurveOID.Ed25519,
        PubKeyAlgorithm.ECDH,
        EllipticCurveOID.Curve25519,
    ),
}


def generate_key(
    email: str, name: str, *, algorithm: str = "rsa4096", passphrase: str | None = None
) -> PrivateKey:
    """A new key for `email` (an MMTP address): a sign/certify primary plus an encryption subkey.

    An empty passphrase means none, as in GnuPG.
    """
    if algorithm not in _KEY_SHAPES:
        raise LocalError(
            f"unknown key algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}"
        )
    address = normalize_address(email, "email")
    name = name.strip()
    if any(c in name for c in "<>\r\n"):
        raise LocalError("the name on a key may not contain '<', '>' or line breaks")
    primary_alg, primary_size, sub_alg, sub_size = _KEY_SHAPES[algorithm]

    key = pgpy.PGPKey.new(primary_alg, primary_size)
    uid = pgpy.PGPUID.new(f"{name} <{address}>" if name else f"<{address}>")
    key.add_uid(
        uid,
        usage={KeyFlags.Sign, KeyFlags.Certify},
        hashes=[HashAlgorithm.SHA256, HashAlgorithm.SHA512],
        ciphers=[SymmetricKeyAlgorithm.AES256],
        compression=[CompressionAlgorithm.Uncompressed],
        primary=True,
    )
    key.add_subkey(
        pgpy.PGPKey.new(sub_alg, sub_size),
        usage={KeyFlags.EncryptCommunications, KeyFlags.EncryptStorage},
    )
    # The numbers come straight from cryptography's generator, so there is nothing to re-check.
    _prime_rsa(key, trusted=True)
    return PrivateKey._wrap(key, _export(key, passphrase), bool(passphrase))


# --- REGISTER_KEY (SPEC §5) --------------------------------------------------------------------


def _invalid(message: str) -> MMTPError:
    return MMTPError(KEY_INVALID, message)


def validate_public_key_for(armored: str, email: str, *, now: datetime | None = None) -> PublicKey:
    """Apply every REGISTER_KEY rule of SPEC §5; KEY_INVALID naming the first rule that fails."""
    when = _now(now)
    public = PublicKey.from_armored(armored)
    key = public._key
    wanted = email.strip().lower()

    if not isinstance(key._key, PubKeyV4):
        raise _invalid("only OpenPGP version 4 keys are accepted; create the key with GnuPG 2.2+")
    problem = _algorithm_problem(key)
    if problem is not None or key.key_algorithm not in _CAN_SIGN:
        problem = problem or f"{public.algorithm} cannot sign"
        raise _invalid(
            f"the primary key is unusable: {problem}. Create a new key (ed25519 or rsa4096)."
        )

    state = public._state(when)
    if state.broken_revocation:
        raise _invalid(
            "the key carries a revocation signature (broken or by another key); a key with a "
            "revocation cannot be registered. Create a new key."
        )
    if state.revoked:
        raise _invalid("the key has been revoked by its owner; create a new key and register that.")
    if not any(u.problem is None for u in state.userids):
        reasons = "; ".join(f"{u.userid!r}: {u.problem}" for u in state.userids) or "it has none"
        raise _invalid(
            f"no user id on the key carries a valid self-signature ({reasons}). Re-create the "
            "key with GnuPG or this program."
        )
    matching = [u for u in state.userids if u.email.lower() == wanted]
    if not any(u.problem is None for u in matching):
        if matching:
            raise _invalid(
                f"the user id for {wanted} is not usable: {matching[0].problem}. Add it again "
                f"(gpg --quick-add-uid FINGERPRINT '{wanted}') and export the key again."
            )
        found = ", ".join(u.email for u in state.userids if u.problem is None)
        raise _invalid(
            f"no user id on the key has the address {wanted} (it has: {found}). Add one "
            f"(gpg --quick-add-uid FINGERPRINT '{wanted}') and export the key again."
        )
    if state.expired(when):
        assert state.expires is not None
        raise _invalid(
            f"the key expired on {state.expires:%Y-%m-%d %H:%M} UTC; extend it "
            "(gpg --quick-set-expire FINGERPRINT 2y) and export it again."
        )
    for sub in state.subkeys:
        if sub.problem is not None:
            raise _invalid(
                f"subkey {_fingerprint(sub.key)} is not validly bound to the primary key: "
                f"{sub.problem}. Remove that subkey or create a new key."
            )
    for sub in state.live_subkeys(when):
        problem = _algorithm_problem(sub.key)
        if problem is not None:
            raise _invalid(
                f"subkey {_fingerprint(sub.key)} is unusable: {problem}. Revoke or remove it, or "
                "create a new key."
            )
    if not state.encryption_keys(key, when):
        raise _invalid(
            "the key has no usable encryption key (a primary key or subkey marked for "
            "encryption, validly bound, not expired and not revoked). Add one "
            "(gpg --quick-add-key FINGERPRINT cv25519 encr) and export the key again."
        )
    return public


# --- encryption --------------------------------------------------------------------------------


def encrypt(plaintext: bytes, recipients: list[PublicKey]) -> str:
    """Encrypt exact bytes to every recipient's encryption key; ASCII armor out."""
    if not recipients:
        raise LocalError("a message needs at least one recipient key to be encrypted to")
    when = _now(None)
    targets = []
    for recipient in recipients:
        usable = recipient._state(when).encryption_keys(recipient._key, when)
        if not usable:
            raise MMTPError(
                KEY_INVALID,
                f"the key {recipient.fingerprint} ({', '.join(recipient.emails)}) has no usable "
                "encryption key (expired, revoked or never had one); ask its owner for a new key",
            )
        targets.append(usable[0])

    literal = pgpy.PGPMessage.new(
        bytes(plaintext), format="b", compression=CompressionAlgorithm.Uncompressed
    )
    session_key = _CIPHER.gen_key()
    # Built from packets rather than PGPKey.encrypt(): that one picks the key by its own reading
    # of the (possibly unsigned) flags; here the key validated above is the one used.
    data = IntegrityProtectedSKEDataV1()
    data.encrypt(session_key, _CIPHER, bytes(literal))
    message = pgpy.PGPMessage()
    message |= data
    for target in targets:
        pkesk = PKESessionKeyV3()
        pkesk.encrypter = bytearray(binascii.unhexlify(target.fingerprint.keyid.encode("ascii")))
        pkesk.pkalg = target.key_algorithm
        pkesk.encrypt_sk(target._key, _CIPHER, session_key)
        message |= pkesk
    return str(message)


def decrypt(armored: str, key: PrivateKey) -> bytes:
    """The exact plaintext bytes of a message encrypted to `key`; LocalError if that fails."""
    try:
        message = pgpy.PGPMessage.from_blob(armored)
    except Exception:
        raise LocalError(
            "the encrypted message is damaged: it is not OpenPGP message data"
        ) from None
    if not message.is_encrypted:
        raise LocalError("the message is not encrypted")
    if not isinstance(message._message, IntegrityProtectedSKEData):
        raise LocalError("the message has no integrity protection; refusing to decrypt it")
    ours = {str(part.fingerprint.keyid) for part in (key._key, *key._key.subkeys.values())}
    if not ours & {str(k) for k in message.encrypters}:
        raise LocalError(
            f"the message is not encrypted to this key ({key.public.fingerprint}); it is for "
            f"key id(s) {', '.join(sorted(map(str, message.encrypters))) or 'unknown'}"
        )
    try:
        inner = key._key.decrypt(message)
    except Exception:
        raise LocalError(
            "the message could not be decrypted with this key; it is damaged or was not "
            "really encrypted to it"
        ) from None
    if not isinstance(inner._message, LiteralData):
        raise LocalError("the decrypted message holds no data")
    return bytes(inner._message._contents)


# --- signatures --------------------------------------------------------------------------------


@contextlib.contextmanager
def _hash_preference_quiet(needed: bool) -> Iterator[None]:
    # SPEC §3/§5 fix SHA-256; PGPy warns (attributed to our frame) when a key's preferences
    # list other hashes. That warning is expected here, so silence exactly it, only then.
    if not needed:
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Selected hash algorithm not in key preferences")
        yield


def sign_detached(data: bytes, key: PrivateKey) -> str:
    """An ASCII-armored, binary-mode (type 0x00), SHA-256 detached signature over `data`."""
    signer = key._key
    try:
        uid = next(iter(signer.userids), None)
        prefs = uid.selfsig.hashprefs if uid is not None and uid.selfsig is not None else []
        with _hash_preference_quiet(HashAlgorithm.SHA256 not in prefs):
            signature = signer.sign(bytes(data), hash=HashAlgorithm.SHA256)
    except Exception as exc:
        raise LocalError(f"this key cannot make signatures ({exc})") from None
    return str(signature)


def verify_detached(
    data: bytes, signature: str, key: PublicKey, *, now: datetime | None = None
) -> bool:
    """True only for a sound binary-mode signature over `data` by a live signing part of `key`."""
    try:
        return _verify_detached(bytes(data), signature, key, now)
    except Exception:
        return False


def _verify_detached(
    data: bytes, signature: str, key: PublicKey, requested_now: datetime | None
) -> bool:
    if not isinstance(signature, str) or not signature.strip():
        return False
    now = _now(requested_now)
    # De-armored here: PGPy's own armor parser runs a pure-Python CRC24 over every byte.
    sig = pgpy.PGPSignature.from_blob(bytearray(openpgp_packets.signature_packet(signature)))
    if sig._signature is None or sig.type != SignatureType.BinaryDocument:
        return False
    lifetime = _hashed(sig, "SignatureExpirationTime")
    created = _sig_created(sig)
    if created is None:
        return False
    if lifetime and lifetime[-1].expires and created + lifetime[-1].expires <= now:
        return False
    issuer_fpr = _hashed(sig, "IssuerFingerprint")
    issuer = str(issuer_fpr[-1].issuer_fingerprint).replace(" ", "").upper() if issuer_fpr else ""
    keyid = _signer_keyid(sig)
    for part in key._state(requested_now).signing_keys(key._key, now):
        fingerprint = key._part_fingerprint(part)
        if issuer and issuer != fingerprint:
            continue
        if keyid and keyid != fingerprint[-16:]:
            continue
        if _crypto_problem(part, sig, data) is None:
            return True
    return False
