"""OpenPGP keys for MMTP: reading, unlocking, exporting and generating them.

Part of the PGPy adapter (with :mod:`mmtp_proto.pgp`, :mod:`mmtp_proto.pgp_validity` and
:mod:`mmtp_proto.pgp_speed`); :mod:`mmtp_proto.pgp` re-exports the public names, so callers
import from there. Every key is looked at by :mod:`mmtp_proto.openpgp_packets` before PGPy
parses it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pgpy
from pgpy.constants import (
    CompressionAlgorithm,
    EllipticCurveOID,
    HashAlgorithm,
    KeyFlags,
    PubKeyAlgorithm,
    SymmetricKeyAlgorithm,
)
from pgpy.packet.fields import MPI, RSAPriv, String2Key

from . import openpgp_packets
from .address import normalize_address
from .errors import KEY_INVALID, LocalError, MMTPError
from .pgp_speed import _copy_primed, _prime_rsa
from .pgp_validity import (
    _algorithm_name,
    _analyze,
    _email_part,
    _fingerprint,
    _name_part,
    _State,
    _Verifier,
)

ALGORITHMS = ("rsa4096", "rsa3072", "rsa2048", "ed25519")


# --- parsing -----------------------------------------------------------------------------------


def _parse_key(text: str) -> Any:
    """Parse exactly one key (public or secret); raise ValueError saying why not."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("it is empty")
    data = openpgp_packets.check_key_shape(text)
    try:
        key, found = pgpy.PGPKey.from_blob(bytearray(data))
    except Exception as exc:
        raise ValueError("it is not OpenPGP key data") from exc
    if key._key is None:
        raise ValueError("it holds no key packet")
    if list(found.values()) != [key]:
        raise ValueError("it holds more than one key")
    return key


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


_STATE_TTL = timedelta(seconds=60)


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
    _order_primes(key)
    # The numbers come straight from cryptography's generator, so there is nothing to re-check.
    _prime_rsa(key, trusted=True)
    return PrivateKey._wrap(key, _export(key, passphrase), bool(passphrase))


def _order_primes(key: pgpy.PGPKey) -> None:
    """RFC 4880 §5.5.3 wants p < q and u = p^-1 mod q; OpenSSL's generator (through PGPy) gives
    p > q, and GnuPG then failed to decrypt about one message in thirty to such a key."""
    for part in (key, *key.subkeys.values()):
        numbers = part._key.keymaterial
        if isinstance(numbers, RSAPriv) and numbers.p > numbers.q:
            numbers.p, numbers.q = numbers.q, numbers.p
            numbers.u = MPI(pow(int(numbers.p), -1, int(numbers.q)))
            numbers._compute_chksum()
            part._key.update_hlen()  # u may take another byte or two
