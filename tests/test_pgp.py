"""mmtp_proto.pgp: keys, REGISTER_KEY rules (SPEC §5), encryption and detached signatures."""

from __future__ import annotations

import hashlib
import os
import re
from datetime import UTC, datetime, timedelta

import pgpy
import pytest
from helpers import armor, split_packets
from pgpy.constants import (
    CompressionAlgorithm,
    EllipticCurveOID,
    HashAlgorithm,
    KeyFlags,
    PubKeyAlgorithm,
    RevocationReason,
    SymmetricKeyAlgorithm,
)

from mmtp_proto import pgp
from mmtp_proto.errors import INVALID_ADDRESS, KEY_INVALID, LocalError, MMTPError

pytestmark = pytest.mark.secure

ALICE = "(alice)%(example.com)"
BOB = "(bob)%(example.com)"
ROSA = "(rosa)%(example.com)"


@pytest.fixture(scope="session")
def alice() -> pgp.PrivateKey:
    return pgp.generate_key(ALICE, "Alice", algorithm="ed25519")


@pytest.fixture(scope="session")
def bob() -> pgp.PrivateKey:
    return pgp.generate_key(BOB, "Bob", algorithm="ed25519")


@pytest.fixture(scope="session")
def rosa() -> pgp.PrivateKey:
    return pgp.generate_key(ROSA, "Rosa", algorithm="rsa2048")


# --- keys the adapter deliberately cannot make, built with PGPy itself ------------------------

FLAGS_SIGN = {KeyFlags.Sign, KeyFlags.Certify}
FLAGS_ENCRYPT = {KeyFlags.EncryptCommunications, KeyFlags.EncryptStorage}


def _pgpy_key(
    email: str = ALICE,
    *,
    primary: tuple = (PubKeyAlgorithm.EdDSA, EllipticCurveOID.Ed25519),
    subkey: tuple | None = (PubKeyAlgorithm.ECDH, EllipticCurveOID.Curve25519),
    **uid_prefs,
) -> pgpy.PGPKey:
    key = pgpy.PGPKey.new(*primary)
    uid_prefs.setdefault("usage", FLAGS_SIGN)
    key.add_uid(
        pgpy.PGPUID.new("Test", email=email),
        hashes=[HashAlgorithm.SHA256],
        ciphers=[SymmetricKeyAlgorithm.AES256],
        compression=[CompressionAlgorithm.Uncompressed],
        **uid_prefs,
    )
    if subkey is not None:
        key.add_subkey(pgpy.PGPKey.new(*subkey), usage=FLAGS_ENCRYPT)
    return key


def _public(key: pgpy.PGPKey) -> str:
    return str(key.pubkey)


# --- a tiny OpenPGP packet splitter (RFC 4880 §4.2), to tamper with keys byte by byte ----------


def _flip_last_byte(packet: bytes) -> bytes:
    return packet[:-1] + bytes([packet[-1] ^ 0x01])


TAG_SIGNATURE, TAG_USER_ID, TAG_PUBLIC_SUBKEY = 2, 13, 14


# --- key generation and armor ------------------------------------------------------------------


def test_generated_ed25519_key_describes_itself(alice: pgp.PrivateKey) -> None:
    public = alice.public
    assert re.fullmatch(r"[0-9A-F]{40}", public.fingerprint)
    assert public.algorithm == "Ed25519"
    assert public.emails == [ALICE]
    assert public.name == "Alice"
    assert public.created.tzinfo is not None
    assert abs(datetime.now(UTC) - public.created) < timedelta(hours=1)
    assert public.expires is None
    assert public.armored.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert alice.armored.startswith("-----BEGIN PGP PRIVATE KEY BLOCK-----")
    assert not alice.is_protected
    assert pgp.validate_public_key_for(public.armored, ALICE).fingerprint == public.fingerprint


def test_generated_rsa_key_has_rsa_subkey_of_the_same_size(rosa: pgp.PrivateKey) -> None:
    assert rosa.public.algorithm == "RSA-2048"
    tags = [tag for tag, _ in split_packets(rosa.public.armored)]
    assert tags.count(TAG_PUBLIC_SUBKEY) == 1
    assert pgp.validate_public_key_for(rosa.public.armored, ROSA).algorithm == "RSA-2048"


def test_generate_key_lowercases_the_address_and_rejects_bad_input() -> None:
    key = pgp.generate_key("(Carol)%(Example.COM)", "", algorithm="ed25519")
    assert key.public.emails == ["(carol)%(example.com)"]
    assert key.public.name == ""
    with pytest.raises(LocalError, match="unknown key algorithm"):
        pgp.generate_key(ALICE, "A", algorithm="dsa1024")
    with pytest.raises(MMTPError) as caught:
        pgp.generate_key("alice@example.com", "A", algorithm="ed25519")
    assert caught.value.code == INVALID_ADDRESS
    with pytest.raises(LocalError, match="name"):
        pgp.generate_key(ALICE, "Eve <evil>", algorithm="ed25519")


def test_armor_round_trip(alice: pgp.PrivateKey) -> None:
    public = pgp.PublicKey.from_armored(alice.public.armored)
    assert public.fingerprint == alice.public.fingerprint
    assert public.armored == alice.public.armored
    assert public == alice.public
    again = pgp.PrivateKey.from_armored(alice.armored)
    assert again.public.fingerprint == alice.public.fingerprint
    assert pgp.decrypt(pgp.encrypt(b"round trip", [public]), again) == b"round trip"


def test_public_key_from_armored_rejects_secret_and_garbage(alice: pgp.PrivateKey) -> None:
    for text in (alice.armored, "", "not a key", alice.public.armored[:120]):
        with pytest.raises(MMTPError) as caught:
            pgp.PublicKey.from_armored(text)
        assert caught.value.code == KEY_INVALID


def test_private_key_from_armored_rejects_public_and_garbage(alice: pgp.PrivateKey) -> None:
    with pytest.raises(LocalError, match="public key"):
        pgp.PrivateKey.from_armored(alice.public.armored)
    with pytest.raises(LocalError, match="could not be read"):
        pgp.PrivateKey.from_armored("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nAAAA\n")


# --- passphrases -------------------------------------------------------------------------------


def test_passphrase_protect_unlock_change_and_remove(alice: pgp.PrivateKey) -> None:
    locked = alice.with_passphrase("correct horse")
    assert locked.is_protected and pgp.armored_key_is_protected(locked.armored)
    assert locked.armored != alice.armored
    assert not pgp.armored_key_is_protected(alice.armored)
    assert not pgp.armored_key_is_protected(alice.public.armored)

    with pytest.raises(LocalError, match="wrong passphrase"):
        pgp.PrivateKey.from_armored(locked.armored, "wrong horse")
    with pytest.raises(LocalError, match="protected by a passphrase"):
        pgp.PrivateKey.from_armored(locked.armored)

    unlocked = pgp.PrivateKey.from_armored(locked.armored, "correct horse")
    assert unlocked.is_protected
    # Usable again and again without the passphrase.
    for _ in range(2):
        assert pgp.decrypt(pgp.encrypt(b"x", [alice.public]), unlocked) == b"x"
        assert pgp.verify_detached(b"y", pgp.sign_detached(b"y", unlocked), alice.public)

    changed = unlocked.with_passphrase("battery staple")
    with pytest.raises(LocalError, match="wrong passphrase"):
        pgp.PrivateKey.from_armored(changed.armored, "correct horse")
    assert pgp.PrivateKey.from_armored(changed.armored, "battery staple").public == alice.public

    plain = changed.with_passphrase(None)
    assert not plain.is_protected and not pgp.armored_key_is_protected(plain.armored)
    assert pgp.PrivateKey.from_armored(plain.armored).public == alice.public


def test_generate_key_with_passphrase() -> None:
    key = pgp.generate_key(BOB, "Bob", algorithm="ed25519", passphrase="s3cret")
    assert key.is_protected
    assert pgp.decrypt(pgp.encrypt(b"ok", [key.public]), key) == b"ok"
    loaded = pgp.PrivateKey.from_armored(key.armored, "s3cret")
    assert loaded.public.fingerprint == key.public.fingerprint


def test_rsa_passphrase_round_trip(rosa: pgp.PrivateKey) -> None:
    locked = rosa.with_passphrase("pw")
    loaded = pgp.PrivateKey.from_armored(locked.armored, "pw")
    assert pgp.decrypt(pgp.encrypt(b"rsa", [rosa.public]), loaded) == b"rsa"
    with pytest.raises(LocalError, match="wrong passphrase"):
        pgp.PrivateKey.from_armored(locked.armored, "nope")


# --- encryption --------------------------------------------------------------------------------

PAYLOADS = [
    b"",
    b"hello",
    "Grüße, 世界 — ✓".encode(),
    b"\x00\r\n\r\x00\xff line endings and NULs stay \n",
    os.urandom(70_000),
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=["empty", "ascii", "utf8", "binary", "large"])
def test_encrypt_decrypt_exact_bytes(alice: pgp.PrivateKey, payload: bytes) -> None:
    armored = pgp.encrypt(payload, [alice.public])
    assert armored.startswith("-----BEGIN PGP MESSAGE-----")
    assert pgp.decrypt(armored, alice) == payload


def test_encrypt_decrypt_rsa(rosa: pgp.PrivateKey) -> None:
    payload = "RSA ünïcode\r\n".encode()
    assert pgp.decrypt(pgp.encrypt(payload, [rosa.public]), rosa) == payload


def test_encrypt_to_several_recipients(
    alice: pgp.PrivateKey, bob: pgp.PrivateKey, rosa: pgp.PrivateKey
) -> None:
    armored = pgp.encrypt(b"to all", [alice.public, bob.public, rosa.public])
    for key in (alice, bob, rosa):
        assert pgp.decrypt(armored, key) == b"to all"


def test_encrypt_uses_the_encryption_subkey(alice: pgp.PrivateKey) -> None:
    subkey = next(p for tag, p in split_packets(alice.public.armored) if tag == TAG_PUBLIC_SUBKEY)
    body = subkey[2:]  # new-format header, short length
    subkey_id = hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).digest()[-8:]
    (tag, session_key), _data = split_packets(pgp.encrypt(b"x", [alice.public]))
    assert tag == 1  # public-key encrypted session key: version, then the recipient key id
    assert session_key[3:11] == subkey_id


def test_encrypt_needs_a_recipient() -> None:
    with pytest.raises(LocalError):
        pgp.encrypt(b"x", [])


def test_encrypt_refuses_a_key_without_encryption_key() -> None:
    signing_only = pgp.PublicKey.from_armored(_public(_pgpy_key(subkey=None)))
    with pytest.raises(MMTPError) as caught:
        pgp.encrypt(b"x", [signing_only])
    assert caught.value.code == KEY_INVALID


def test_decrypt_with_the_wrong_key(alice: pgp.PrivateKey, bob: pgp.PrivateKey) -> None:
    with pytest.raises(LocalError, match="not encrypted to this key"):
        pgp.decrypt(pgp.encrypt(b"for alice", [alice.public]), bob)


@pytest.mark.parametrize(
    "text", ["", "garbage", "-----BEGIN PGP MESSAGE-----\n\nAAAA\n-----END PGP MESSAGE-----\n"]
)
def test_decrypt_garbage(alice: pgp.PrivateKey, text: str) -> None:
    with pytest.raises(LocalError):
        pgp.decrypt(text, alice)


def test_decrypt_tampered_ciphertext(alice: pgp.PrivateKey) -> None:
    packets = split_packets(pgp.encrypt(b"secret words", [alice.public]))
    tampered = b"".join(
        _flip_last_byte(p) if tag == 18 else p for tag, p in packets
    )  # 18: integrity-protected data
    with pytest.raises(LocalError):
        pgp.decrypt(armor(tampered, "MESSAGE"), alice)


def test_decrypt_refuses_a_public_key_block(alice: pgp.PrivateKey) -> None:
    with pytest.raises(LocalError):
        pgp.decrypt(alice.public.armored, alice)


# --- detached signatures -----------------------------------------------------------------------


@pytest.mark.parametrize("which", ["alice", "rosa"])
def test_sign_verify(which: str, request: pytest.FixtureRequest) -> None:
    key: pgp.PrivateKey = request.getfixturevalue(which)
    data = "MMTP-AUTH\nserver\nnonce\n(alice)%(example.com) — ✓".encode()
    signature = pgp.sign_detached(data, key)
    assert signature.startswith("-----BEGIN PGP SIGNATURE-----")
    assert pgp.verify_detached(data, signature, key.public)
    assert not pgp.verify_detached(data + b" ", signature, key.public)
    assert not pgp.verify_detached(data[:-1], signature, key.public)


def test_signature_is_binary_mode_sha256(alice: pgp.PrivateKey) -> None:
    (tag, packet), *_ = split_packets(pgp.sign_detached(b"data", alice))
    assert tag == TAG_SIGNATURE
    body = packet[2:]  # new-format header, short length
    version, sigtype, _pubalg, halg = body[0], body[1], body[2], body[3]
    assert (version, sigtype, halg) == (4, 0x00, 8)


def test_verify_with_the_wrong_key(alice: pgp.PrivateKey, bob: pgp.PrivateKey) -> None:
    signature = pgp.sign_detached(b"data", alice)
    assert not pgp.verify_detached(b"data", signature, bob.public)


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "garbage",
        "-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n",
        None,
        12,
    ],
)
def test_verify_garbage_signature_is_false(alice: pgp.PrivateKey, signature: object) -> None:
    assert pgp.verify_detached(b"data", signature, alice.public) is False  # type: ignore[arg-type]


def test_verify_tampered_or_foreign_armor_is_false(alice: pgp.PrivateKey) -> None:
    signature = pgp.sign_detached(b"data", alice)
    (_, packet), *_ = split_packets(signature)
    assert not pgp.verify_detached(
        b"data", armor(_flip_last_byte(packet), "SIGNATURE"), alice.public
    )
    assert not pgp.verify_detached(b"data", alice.public.armored, alice.public)
    assert not pgp.verify_detached(b"data", pgp.encrypt(b"data", [alice.public]), alice.public)
    assert not pgp.verify_detached(b"data", signature[: len(signature) // 2], alice.public)


def test_verify_is_false_once_the_key_expired() -> None:
    key = _pgpy_key(key_expiration=timedelta(days=1))
    public = pgp.PublicKey.from_armored(_public(key))
    private = pgp.PrivateKey.from_armored(str(key))
    assert public.expires is not None
    signature = pgp.sign_detached(b"data", private)
    assert pgp.verify_detached(b"data", signature, public)
    later = datetime.now(UTC) + timedelta(days=2)
    assert not pgp.verify_detached(b"data", signature, public, now=later)


def test_verify_is_false_for_a_revoked_key() -> None:
    key = _pgpy_key()
    signature = pgp.sign_detached(b"data", pgp.PrivateKey.from_armored(str(key)))
    key |= key.revoke(key, reason=RevocationReason.Compromised)
    assert not pgp.verify_detached(b"data", signature, pgp.PublicKey.from_armored(_public(key)))


def test_signature_by_a_cross_signed_signing_subkey_verifies() -> None:
    key = _pgpy_key(usage={KeyFlags.Certify})
    key.add_subkey(
        pgpy.PGPKey.new(PubKeyAlgorithm.EdDSA, EllipticCurveOID.Ed25519), usage={KeyFlags.Sign}
    )
    public = pgp.validate_public_key_for(_public(key), ALICE)
    signature = pgp.sign_detached(b"data", pgp.PrivateKey.from_armored(str(key)))
    assert pgp.verify_detached(b"data", signature, public)
    assert not pgp.verify_detached(b"other", signature, public)


def test_signature_by_a_certify_only_primary_does_not_count() -> None:
    # The primary may only certify: a signature it makes anyway is not by a signing key.
    key = _pgpy_key(usage={KeyFlags.Certify}, subkey=None)
    key._require_usage_flags = False  # make PGPy sign regardless
    signature = key.sign(b"data", hash=HashAlgorithm.SHA256)
    public = pgp.PublicKey.from_armored(_public(key))
    assert not pgp.verify_detached(b"data", str(signature), public)


# --- REGISTER_KEY rules (SPEC §5) ---------------------------------------------------------------


def _rejected(armored: str, email: str = ALICE, **kwargs) -> str:
    with pytest.raises(MMTPError) as caught:
        pgp.validate_public_key_for(armored, email, **kwargs)
    assert caught.value.code == KEY_INVALID
    assert len(caught.value.message) > 20
    return caught.value.message


def test_valid_keys_pass_and_email_compares_lowercased(alice: pgp.PrivateKey) -> None:
    assert pgp.validate_public_key_for(alice.public.armored, "(ALICE)%(Example.com)")
    assert pgp.validate_public_key_for(_public(_pgpy_key()), ALICE)


def test_secret_key_is_rejected(alice: pgp.PrivateKey) -> None:
    assert "secret" in _rejected(alice.armored)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!!\n-----END PGP PUBLIC KEY BLOCK-----\n",
        "-----BEGIN PGP MESSAGE-----\n\nAAAA\n-----END PGP MESSAGE-----\n",
        "ünïcödé ☃",
    ],
)
def test_garbage_armor_is_rejected(text: str) -> None:
    assert "could not be read" in _rejected(text)


def test_two_keys_in_one_block_are_rejected(alice: pgp.PrivateKey, bob: pgp.PrivateKey) -> None:
    both = b"".join(
        p for _, p in split_packets(alice.public.armored) + split_packets(bob.public.armored)
    )
    assert "more than one key" in _rejected(armor(both))


def test_wrong_email_is_rejected(alice: pgp.PrivateKey) -> None:
    message = _rejected(alice.public.armored, BOB)
    assert BOB in message and ALICE in message


def test_expired_key_is_rejected() -> None:
    armored = _public(_pgpy_key(key_expiration=timedelta(days=1)))
    assert pgp.validate_public_key_for(armored, ALICE)
    later = datetime.now(UTC) + timedelta(days=2)
    assert "expired" in _rejected(armored, now=later)


def test_revoked_key_is_rejected() -> None:
    key = _pgpy_key()
    key |= key.revoke(key, reason=RevocationReason.Retired)
    assert "revoked" in _rejected(_public(key))


def test_key_with_a_revocation_by_another_key_is_rejected(bob: pgp.PrivateKey) -> None:
    key = _pgpy_key()
    foreign = _pgpy_key(BOB)
    revocation = foreign.revoke(foreign, reason=RevocationReason.Retired)
    packets = split_packets(_public(key))
    spliced = packets[0][1] + bytes(revocation.__bytes__()) + b"".join(p for _, p in packets[1:])
    assert "revocation" in _rejected(armor(spliced))


def test_small_rsa_is_rejected() -> None:
    key = _pgpy_key(
        primary=(PubKeyAlgorithm.RSAEncryptOrSign, 1024),
        subkey=(PubKeyAlgorithm.RSAEncryptOrSign, 1024),
    )
    assert "1024" in _rejected(_public(key))


def test_other_curves_are_rejected() -> None:
    key = _pgpy_key(
        primary=(PubKeyAlgorithm.ECDSA, EllipticCurveOID.NIST_P256),
        subkey=(PubKeyAlgorithm.ECDH, EllipticCurveOID.NIST_P256),
    )
    assert "NIST_P256" in _rejected(_public(key))


def test_weak_encryption_subkey_is_rejected() -> None:
    key = _pgpy_key(subkey=(PubKeyAlgorithm.ECDH, EllipticCurveOID.NIST_P256))
    assert "subkey" in _rejected(_public(key))


def test_key_without_encryption_key_is_rejected() -> None:
    assert "no usable encryption key" in _rejected(_public(_pgpy_key(subkey=None)))


def test_rsa_primary_that_encrypts_needs_no_subkey(rosa: pgp.PrivateKey) -> None:
    key = _pgpy_key(
        primary=(PubKeyAlgorithm.RSAEncryptOrSign, 2048),
        subkey=None,
        usage=FLAGS_SIGN | FLAGS_ENCRYPT,
    )
    public = pgp.validate_public_key_for(_public(key), ALICE)
    private = pgp.PrivateKey.from_armored(str(key))
    assert pgp.decrypt(pgp.encrypt(b"primary", [public]), private) == b"primary"


def test_revoked_encryption_subkey_leaves_no_encryption_key() -> None:
    key = _pgpy_key()
    (subkey,) = key.subkeys.values()
    subkey |= key.revoke(subkey)
    assert "no usable encryption key" in _rejected(_public(key))


def test_broken_subkey_binding_is_rejected(alice: pgp.PrivateKey) -> None:
    packets = split_packets(alice.public.armored)
    assert [tag for tag, _ in packets] == [6, TAG_USER_ID, 2, TAG_PUBLIC_SUBKEY, 2]
    broken = b"".join(p for _, p in packets[:-1]) + _flip_last_byte(packets[-1][1])
    assert "not validly bound" in _rejected(armor(broken))


def test_subkey_bound_by_another_key_is_rejected(
    alice: pgp.PrivateKey, bob: pgp.PrivateKey
) -> None:
    mine, theirs = split_packets(alice.public.armored), split_packets(bob.public.armored)
    spliced = b"".join(p for _, p in mine[:3] + theirs[3:])
    assert "not validly bound" in _rejected(armor(spliced))


def test_subkey_without_binding_is_rejected(alice: pgp.PrivateKey) -> None:
    packets = split_packets(alice.public.armored)
    assert "not validly bound" in _rejected(armor(b"".join(p for _, p in packets[:-1])))


def test_broken_user_id_self_signature_is_rejected(alice: pgp.PrivateKey) -> None:
    packets = split_packets(alice.public.armored)
    broken = b"".join(_flip_last_byte(p) if i == 2 else p for i, (_, p) in enumerate(packets))
    assert "self-signature" in _rejected(armor(broken))


def test_user_id_without_self_signature_does_not_count(alice: pgp.PrivateKey) -> None:
    # An attacker may append any user id to a key; without the owner's signature it is ignored.
    packets = split_packets(alice.public.armored)
    extra_uid = BOB.encode()
    uid_packet = bytes([0xC0 | TAG_USER_ID, len(extra_uid)]) + extra_uid
    spliced = b"".join(p for _, p in packets) + uid_packet
    assert pgp.validate_public_key_for(armor(spliced), ALICE)
    assert BOB in _rejected(armor(spliced), BOB)


def test_revoked_user_id_does_not_count() -> None:
    key = _pgpy_key()
    (uid,) = key.userids
    uid |= key.revoke(uid)
    assert "revoked" in _rejected(_public(key))


def test_signature_verifies_whatever_its_crc24_footer_says(alice: pgp.PrivateKey) -> None:
    # RFC 9580 §6.1: the armor checksum must not decide acceptance; the signature does.
    data = b"covered bytes"
    signature = pgp.sign_detached(data, alice)
    lines = signature.strip().splitlines()
    body = [line for line in lines[1:-1] if line and not line.startswith("=")]
    without_crc = "\n".join([lines[0], "", *body, lines[-1]]) + "\n"
    wrong_crc = "\n".join([lines[0], "Version: x", "", *body, "=AAAA", lines[-1]]) + "\n"
    crlf = signature.replace("\n", "\r\n")
    for variant in (without_crc, wrong_crc, crlf):
        assert pgp.verify_detached(data, variant, alice.public)
        assert not pgp.verify_detached(data + b"!", variant, alice.public)


def test_verifying_with_the_current_time_still_checks_expiry(alice: pgp.PrivateKey) -> None:
    data = b"covered bytes"
    signature = pgp.sign_detached(data, alice)
    assert pgp.verify_detached(data, signature, alice.public)  # fills the one-minute cache
    far_future = datetime.now(UTC) + timedelta(days=365 * 200)
    past = datetime(2000, 1, 1, tzinfo=UTC)  # before the key existed
    assert pgp.verify_detached(data, signature, alice.public, now=far_future)
    assert not pgp.verify_detached(data, signature, alice.public, now=past)
