"""OpenPGP for MMTP (SPEC §3, §5): keys, REGISTER_KEY checks, encryption and signatures.

Together with :mod:`mmtp_proto.pgp_keys` (reading and making keys, re-exported here),
:mod:`mmtp_proto.pgp_validity` (is a key sound?) and :mod:`mmtp_proto.pgp_speed` (RSA private
keys checked once), this is the only code that talks to PGPy 0.6.0, so the library
can be swapped later; no PGPy type appears in a public signature. PGPy parses and computes, but
it does not judge keys (its ``verify()`` ignores revocation, expiry and subkey bindings), so
every validity rule is decided by the adapter from signatures it verifies itself, reading only
hashed (signed) subpackets.
"""

from __future__ import annotations

import binascii
import contextlib
import warnings
from collections.abc import Iterator
from datetime import datetime

import pgpy
from pgpy.constants import (
    CompressionAlgorithm,
    HashAlgorithm,
    SignatureType,
    SymmetricKeyAlgorithm,
)
from pgpy.packet.packets import (
    IntegrityProtectedSKEData,
    IntegrityProtectedSKEDataV1,
    PKESessionKeyV3,
    PubKeyV4,
)

from . import openpgp_message, openpgp_packets
from .errors import KEY_INVALID, SIGNATURE_INVALID, LocalError, MMTPError
from .pgp_keys import (
    ALGORITHMS,
    PrivateKey,
    PublicKey,
    _now,
    armored_key_is_protected,
    generate_key,
)
from .pgp_validity import (
    _CAN_SIGN,
    _algorithm_problem,
    _crypto_problem,
    _fingerprint,
    _hashed,
    _sig_created,
    _signer_keyid,
)

__all__ = [
    "ALGORITHMS",
    "PrivateKey",
    "PublicKey",
    "armored_key_is_protected",
    "check_signature_shape",
    "decrypt",
    "encrypt",
    "generate_key",
    "sign_detached",
    "validate_public_key_for",
    "verify_detached",
]

# A message's plaintext is about a frame's worth of JSON; compression may make some more, not
# hundreds of MiB: 4 x the server's default maxFrameBytes (config.ServerConfig: 4 MiB).
DEFAULT_MAX_PLAINTEXT_BYTES = 4 * 4 * 1024 * 1024

# AES-256 is in every OpenPGP implementation still in use, so preferences need not be negotiated.
_CIPHER = SymmetricKeyAlgorithm.AES256


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


def decrypt(
    armored: str, key: PrivateKey, *, max_bytes: int = DEFAULT_MAX_PLAINTEXT_BYTES
) -> bytes:
    """The exact plaintext bytes of a message encrypted to `key`; LocalError if that fails,
    or if it would expand beyond `max_bytes` (checked while decompressing, never after)."""
    try:
        # De-armored here: linear time, unlike PGPy's armor regex.
        data = openpgp_packets.dearmor(armored, "MESSAGE")
        openpgp_message.check_message_shape(data)
        message = pgpy.PGPMessage.from_blob(bytearray(data))
    except openpgp_message.TooManyPackets as exc:
        raise LocalError(f"the encrypted message is refused: {exc}") from None
    except Exception:
        raise LocalError(
            "the encrypted message is damaged: it is not OpenPGP message data"
        ) from None
    if not message.is_encrypted:
        raise LocalError("the message is not encrypted")
    if not isinstance(message._message, IntegrityProtectedSKEData):
        raise LocalError("the message has no integrity protection; refusing to decrypt it")
    parts = {str(p.fingerprint.keyid): p for p in (key._key, *key._key.subkeys.values())}
    # Passphrase-encrypted session keys (SKESK) name no key; they are not for us.
    pkesk = next(
        (s for s in message._sessionkeys if str(getattr(s, "encrypter", "")) in parts), None
    )
    if pkesk is None:
        raise LocalError(
            f"the message is not encrypted to this key ({key.public.fingerprint}); it is for "
            f"key id(s) {', '.join(sorted(map(str, message.encrypters))) or 'unknown'}"
        )
    try:
        # PGPy's own decrypt() would also decompress, all at once: only decrypt with it here.
        cipher, session_key = pkesk.decrypt_sk(parts[str(pkesk.encrypter)]._key)
        plaintext = bytes(message._message.decrypt(session_key, cipher))
    except Exception:
        raise LocalError(
            "the message could not be decrypted with this key; it is damaged or was not "
            "really encrypted to it"
        ) from None
    try:
        # The integrity check passed; the last 22 bytes are its MDC packet.
        return openpgp_message.literal_data(plaintext[:-22], max_bytes)
    except openpgp_message.PlaintextTooLarge as exc:
        raise LocalError(
            f"the message is refused: {exc} when opened (a decompression bomb?); the limit "
            f"is {max_bytes} bytes"
        ) from None
    except ValueError as exc:
        raise LocalError(f"the decrypted message is damaged: {exc}") from None


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


def check_signature_shape(signature: str) -> None:
    """SIGNATURE_INVALID saying why, for a signature no honest signer makes (one signature
    packet with modest subpackets); costs microseconds and parses nothing with PGPy."""
    try:
        openpgp_packets.signature_packet(signature)
    except ValueError as exc:
        raise MMTPError(
            SIGNATURE_INVALID,
            f"the signature cannot be checked: {exc}. Send one ASCII-armored detached OpenPGP "
            "signature as GnuPG or this program makes it.",
        ) from None


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
