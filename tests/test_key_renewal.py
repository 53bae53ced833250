"""SPEC revision 2 §5 key renewal: a copy of the registered key (same primary fingerprint) is
merged without AUTH, and kept only when it carries a valid self-signature newer than every one
stored. On the revision-1 server an owner whose key had expired could neither AUTH nor register
the renewed key (KEY_EXISTS): locked out for good.

Keys here are real Ed25519 keys built with PGPy, with a chosen creation time and expiry.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
    SignatureType,
    SymmetricKeyAlgorithm,
)
from rules_harness import Server

from mmtp_proto import key_merge, pgp
from mmtp_proto.openpgp_packets import material_digest

ERIN = "(erin)%(localhost)"
NOW = datetime.now(UTC).replace(microsecond=0)
CREATED = NOW - timedelta(days=10)
_PREFS = dict(
    usage={KeyFlags.Sign, KeyFlags.Certify},
    hashes=[HashAlgorithm.SHA256],
    ciphers=[SymmetricKeyAlgorithm.AES256],
    compression=[CompressionAlgorithm.Uncompressed],
    primary=True,
)


def expiring_key(lifetime: timedelta) -> pgpy.PGPKey:
    """Erin's key, made ten days ago, valid for `lifetime` from then."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        key = pgpy.PGPKey.new(PubKeyAlgorithm.EdDSA, EllipticCurveOID.Ed25519, created=CREATED)
        key.add_uid(
            pgpy.PGPUID.new(f"Erin <{ERIN}>"), key_expiration=lifetime, created=CREATED, **_PREFS
        )
        sub = pgpy.PGPKey.new(PubKeyAlgorithm.ECDH, EllipticCurveOID.Curve25519, created=CREATED)
        key.add_subkey(
            sub, usage={KeyFlags.EncryptCommunications, KeyFlags.EncryptStorage}, created=CREATED
        )
    return key


def renew(key: pgpy.PGPKey, lifetime: timedelta, created: datetime | None = None) -> str:
    """What `gpg --quick-set-expire` does: a new self-signature with a later expiry."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uid = key.userids[0]
        uid |= key.certify(
            uid, SignatureType.Positive_Cert, key_expiration=lifetime, created=created, **_PREFS
        )
    return str(key.pubkey)


def private(key: pgpy.PGPKey) -> pgp.PrivateKey:
    return pgp.PrivateKey.from_armored(str(key))


@pytest.fixture
def registered_erin(tmp_path: Path) -> Iterator[tuple[Server, pgpy.PGPKey, str]]:
    """Erin registered her key a day after making it; it expired four days later."""
    key = expiring_key(timedelta(days=5))
    original = str(key.pubkey)
    srv = Server(tmp_path / "data", now=(CREATED + timedelta(days=1)).timestamp())
    assert srv.connect().register(ERIN, original) == "OK"
    srv.clock.now = time.time()
    yield srv, key, original
    srv.close()


def served(srv: Server) -> str:
    return srv.connect().request("REQUEST_PUBLIC_KEY", email=ERIN)["publicKey"]


def test_an_expired_owner_renews_without_auth_and_gets_back_in(registered_erin):
    srv, key, _original = registered_erin
    conn = srv.connect()
    assert conn.auth(ERIN, private(key)) == "AUTH_FAILED"  # expired: AUTH stays refused
    renewed = renew(key, timedelta(days=400))
    answer = conn.request("REGISTER_KEY", email=ERIN, publicKey=renewed)
    assert answer["status"] == "OK", answer
    assert "renewed" in answer["message"]
    now_served = pgp.PublicKey.from_armored(served(srv))
    assert now_served.expires == CREATED + timedelta(days=400)
    assert srv.connect().auth(ERIN, private(key)) == "OK"


def test_a_copy_adding_nothing_newer_changes_nothing(registered_erin):
    srv, key, original = registered_erin
    before = served(srv)
    assert srv.connect().register(ERIN, original) == "OK"
    renewed = renew(key, timedelta(days=400))
    # The renewed copy with its new self-signature broken: newer in date, but not valid.
    old_packets = {p for _, p in split_packets(original)}
    forged = b""
    for tag, packet in split_packets(renewed):
        if tag == 2 and packet not in old_packets:
            packet = packet[:-1] + bytes([packet[-1] ^ 1])
        forged += packet
    answer = srv.connect().request("REGISTER_KEY", email=ERIN, publicKey=armor(forged))
    assert answer["status"] == "OK" and "nothing" in answer["message"], answer
    assert served(srv) == before
    assert srv.connect().auth(ERIN, private(key)) == "AUTH_FAILED"


def test_the_merge_keeps_every_packet_of_the_stored_copy(registered_erin):
    srv, key, original = registered_erin
    renewed = renew(key, timedelta(days=400))
    original_packets = split_packets(original)
    old_self_signature = original_packets[2]  # key, user id, then its self-signature
    assert old_self_signature[0] == 2
    # A copy that lost the old self-signature (an exporter keeping only the newest one).
    trimmed = b"".join(p for t, p in split_packets(renewed) if (t, p) != old_self_signature)
    assert srv.connect().register(ERIN, armor(trimmed)) == "OK"
    merged = served(srv)
    assert {p for _, p in original_packets} <= {p for _, p in split_packets(merged)}
    assert material_digest(merged) == material_digest(key_merge.merge(original, renewed))


def test_a_revocation_is_published_and_then_only_the_operator_can_help(registered_erin):
    srv, key, _original = registered_erin
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        key |= key.revoke(key, reason=RevocationReason.Compromised)
    revoked = str(key.pubkey)
    answer = srv.connect().request("REGISTER_KEY", email=ERIN, publicKey=revoked)
    assert answer["status"] == "OK" and "revoked" in answer["message"], answer
    assert "REVOCATION" not in served(srv)  # armored as a key, carrying the revocation
    stored = pgp.PublicKey.from_armored(served(srv))
    assert key_merge.revocation(stored, NOW) == "valid"
    assert srv.connect().auth(ERIN, private(key)) == "AUTH_FAILED"
    # Even a genuinely newer self-signature does not undo a revocation.
    renewed = renew(key, timedelta(days=400), created=datetime.now(UTC) + timedelta(minutes=1))
    assert srv.connect().register(ERIN, renewed) == "KEY_INVALID"
    other = pgp.generate_key(ERIN, "Erin", algorithm="ed25519")
    assert srv.connect().register(ERIN, other) == "KEY_EXISTS"


def test_merge_refuses_another_primary_key():
    one = expiring_key(timedelta(days=5))
    two = expiring_key(timedelta(days=5))
    with pytest.raises(ValueError, match="different primary keys"):
        key_merge.merge(str(one.pubkey), str(two.pubkey))
    assert (
        key_merge.primary_fingerprint(str(one.pubkey))
        == pgp.PublicKey.from_armored(str(one.pubkey)).fingerprint
    )
    assert key_merge.primary_fingerprint("not a key") is None


@pytest.mark.skipif(shutil.which("gpg") is None, reason="GnuPG's `gpg` binary is not installed")
def test_a_key_renewed_with_gnupg_is_accepted_without_auth(tmp_path):
    """What an owner does in practice: `gpg --quick-set-expire`, export, register."""
    from test_gpg_interop import GnuPG

    home = Path(tempfile.mkdtemp(prefix="mmtp-gpg-", dir="/tmp"))
    gpg = GnuPG(home)
    srv = Server(tmp_path / "data", now=time.time())
    try:
        gpg.run("--quick-gen-key", ERIN, "future-default", "default", "3d")
        first = gpg.export(ERIN)
        assert srv.connect().register(ERIN, first) == "OK"
        fingerprint = gpg.fingerprint(ERIN)
        time.sleep(1.1)  # the new self-signature must be newer, to the second
        gpg.run("--quick-set-expire", fingerprint, "2y")
        gpg.run("--quick-set-expire", fingerprint, "2y", "*")
        answer = srv.connect().request("REGISTER_KEY", email=ERIN, publicKey=gpg.export(ERIN))
        assert answer["status"] == "OK" and "renewed" in answer["message"], answer
        expires = pgp.PublicKey.from_armored(served(srv)).expires
        assert expires is not None and expires > datetime.now(UTC) + timedelta(days=700)
        # Exporting again adds nothing newer.
        again = srv.connect().request("REGISTER_KEY", email=ERIN, publicKey=gpg.export(ERIN))
        assert again["status"] == "OK" and "renewed" not in again["message"], again
    finally:
        srv.close()
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, check=False
        )
        shutil.rmtree(home, ignore_errors=True)
