"""mmtp_proto.pgp against the real GnuPG: each side reads what the other writes."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mmtp_proto import pgp
from mmtp_proto.errors import KEY_INVALID, LocalError, MMTPError

GPG = shutil.which("gpg") or ("/usr/bin/gpg" if os.path.exists("/usr/bin/gpg") else None)

pytestmark = [
    pytest.mark.secure,
    pytest.mark.skipif(GPG is None, reason="GnuPG's `gpg` binary is not installed"),
]

BOB = "(bob)%(localhost)"  # gpg: ed25519 + cv25519
CAROL = "(carol)%(localhost)"  # gpg: rsa3072 + rsa3072 encryption subkey
ALICE = "(alice)%(localhost)"  # ours, imported into gpg
PAYLOAD = "Grüße\r\n\x00 binary-safe — ✓\n".encode()


class GnuPG:
    """gpg in a throw-away home; the path stays short because gpg-agent puts sockets there."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def run(self, *args: str, data: bytes = b"", passphrase: str = "") -> bytes:
        result = subprocess.run(
            [
                GPG,
                "--homedir",
                str(self.home),
                "--batch",
                "--yes",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                passphrase,
                "--trust-model",
                "always",
                *args,
            ],
            input=data,
            capture_output=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"gpg {' '.join(args)} failed: {result.stderr.decode()}")
        return result.stdout

    def fingerprint(self, uid: str) -> str:
        listing = self.run("--with-colons", "--list-keys", uid).decode()
        return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr"))

    def export(self, uid: str) -> str:
        return self.run("--armor", "--export", uid).decode()

    def export_secret(self, uid: str, passphrase: str = "") -> str:
        return self.run("--armor", "--export-secret-keys", uid, passphrase=passphrase).decode()


@pytest.fixture(scope="module")
def gpg() -> Iterator[GnuPG]:
    home = Path(tempfile.mkdtemp(prefix="mmtp-gpg-", dir="/tmp"))
    tool = GnuPG(home)
    tool.run("--quick-gen-key", BOB, "future-default", "default", "never")
    tool.run("--quick-gen-key", CAROL, "rsa3072", "sign,cert", "never")
    tool.run("--quick-add-key", tool.fingerprint(CAROL), "rsa3072", "encr", "never")
    yield tool
    subprocess.run(
        ["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, check=False
    )
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def alice(gpg: GnuPG) -> pgp.PrivateKey:
    key = pgp.generate_key(ALICE, "Alice", algorithm="ed25519")
    gpg.run("--import", data=key.armored.encode())
    return key


@pytest.fixture(scope="module")
def alice_rsa(gpg: GnuPG) -> pgp.PrivateKey:
    key = pgp.generate_key("(arsa)%(localhost)", "Alice RSA", algorithm="rsa2048")
    gpg.run("--import", data=key.armored.encode())
    return key


# --- gpg reads ours ----------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["alice", "alice_rsa"])
def test_gpg_verifies_our_signature(
    gpg: GnuPG, which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    key: pgp.PrivateKey = request.getfixturevalue(which)
    (tmp_path / "data").write_bytes(PAYLOAD)
    (tmp_path / "data.asc").write_text(pgp.sign_detached(PAYLOAD, key))
    gpg.run("--verify", str(tmp_path / "data.asc"), str(tmp_path / "data"))
    (tmp_path / "data").write_bytes(PAYLOAD + b"!")
    with pytest.raises(AssertionError, match="BAD signature"):
        gpg.run("--verify", str(tmp_path / "data.asc"), str(tmp_path / "data"))


@pytest.mark.parametrize("uid", [BOB, CAROL])
def test_gpg_decrypts_our_ciphertext_to_its_keys(gpg: GnuPG, uid: str) -> None:
    recipient = pgp.validate_public_key_for(gpg.export(uid), uid)
    assert gpg.run("--decrypt", data=pgp.encrypt(PAYLOAD, [recipient]).encode()) == PAYLOAD


@pytest.mark.parametrize("which", ["alice", "alice_rsa"])
def test_gpg_decrypts_with_our_secret_key(
    gpg: GnuPG, which: str, request: pytest.FixtureRequest
) -> None:
    key: pgp.PrivateKey = request.getfixturevalue(which)
    for payload in (PAYLOAD, b""):
        assert gpg.run("--decrypt", data=pgp.encrypt(payload, [key.public]).encode()) == payload


def test_gpg_imports_our_passphrase_protected_key(gpg: GnuPG) -> None:
    key = pgp.generate_key("(prot)%(localhost)", "Prot", algorithm="ed25519", passphrase="pw 1")
    gpg.run("--import", data=key.armored.encode(), passphrase="pw 1")
    ciphertext = pgp.encrypt(b"locked", [key.public]).encode()
    with pytest.raises(AssertionError):
        gpg.run("--decrypt", data=ciphertext, passphrase="wrong")
    assert gpg.run("--decrypt", data=ciphertext, passphrase="pw 1") == b"locked"


# --- we read gpg's -----------------------------------------------------------------------------


@pytest.mark.parametrize(("uid", "algorithm"), [(BOB, "Ed25519"), (CAROL, "RSA-3072")])
def test_gpg_keys_pass_register_key_rules(gpg: GnuPG, uid: str, algorithm: str) -> None:
    public = pgp.validate_public_key_for(gpg.export(uid), uid.upper())
    assert public.fingerprint == gpg.fingerprint(uid)
    assert public.algorithm == algorithm
    assert public.emails == [uid]
    assert public.expires is None


@pytest.mark.parametrize("uid", [BOB, CAROL])
def test_gpg_signature_verifies(gpg: GnuPG, uid: str, tmp_path: Path) -> None:
    public = pgp.PublicKey.from_armored(gpg.export(uid))
    (tmp_path / "data").write_bytes(PAYLOAD)
    signature = gpg.run(
        "--local-user", uid, "--armor", "--detach-sign", "--output", "-", str(tmp_path / "data")
    ).decode()
    assert pgp.verify_detached(PAYLOAD, signature, public)
    assert not pgp.verify_detached(PAYLOAD[:-1], signature, public)
    other = pgp.PublicKey.from_armored(gpg.export(CAROL if uid == BOB else BOB))
    assert not pgp.verify_detached(PAYLOAD, signature, other)


def test_gpg_text_mode_signature_is_not_binary_mode(gpg: GnuPG, tmp_path: Path) -> None:
    (tmp_path / "data").write_bytes(b"line\n")
    signature = gpg.run(
        "--local-user",
        BOB,
        "--textmode",
        "--armor",
        "--detach-sign",
        "--output",
        "-",
        str(tmp_path / "data"),
    ).decode()
    assert not pgp.verify_detached(
        b"line\n", signature, pgp.PublicKey.from_armored(gpg.export(BOB))
    )


def test_gpg_ciphertext_decrypts_with_our_key(gpg: GnuPG, alice: pgp.PrivateKey) -> None:
    for payload in (PAYLOAD, b"", os.urandom(5000)):
        ciphertext = gpg.run("--armor", "--recipient", ALICE, "--encrypt", data=payload)
        assert pgp.decrypt(ciphertext.decode(), alice) == payload


@pytest.mark.parametrize("uid", [BOB, CAROL])
def test_gpg_secret_keys_work_here(gpg: GnuPG, uid: str) -> None:
    key = pgp.PrivateKey.from_armored(gpg.export_secret(uid))
    assert key.public.fingerprint == gpg.fingerprint(uid)
    # gpg compresses for its own keys (they allow it); the exact bytes still come back.
    ciphertext = gpg.run("--armor", "--recipient", uid, "--encrypt", data=PAYLOAD)
    assert pgp.decrypt(ciphertext.decode(), key) == PAYLOAD
    signature = pgp.sign_detached(b"from us", key)
    assert pgp.verify_detached(b"from us", signature, pgp.PublicKey.from_armored(gpg.export(uid)))


def test_gpg_protected_secret_key_needs_its_passphrase(gpg: GnuPG) -> None:
    uid = "(dora)%(localhost)"
    gpg.run("--quick-gen-key", uid, "future-default", "default", "never", passphrase="dora pw")
    exported = gpg.export_secret(uid, passphrase="dora pw")
    assert pgp.armored_key_is_protected(exported)
    with pytest.raises(LocalError, match="wrong passphrase"):
        pgp.PrivateKey.from_armored(exported, "not it")
    key = pgp.PrivateKey.from_armored(exported, "dora pw")
    ciphertext = gpg.run("--armor", "--recipient", uid, "--encrypt", data=b"for dora")
    assert pgp.decrypt(ciphertext.decode(), key) == b"for dora"


# --- gpg-made keys that break a REGISTER_KEY rule ----------------------------------------------


def _rejected(armored: str, uid: str, **kwargs) -> str:
    with pytest.raises(MMTPError) as caught:
        pgp.validate_public_key_for(armored, uid, **kwargs)
    assert caught.value.code == KEY_INVALID
    return caught.value.message


def test_gpg_key_expiring_tomorrow(gpg: GnuPG) -> None:
    uid = "(eve)%(localhost)"
    gpg.run("--quick-gen-key", uid, "future-default", "default", "1d")
    armored = gpg.export(uid)
    public = pgp.validate_public_key_for(armored, uid)
    assert public.expires is not None
    assert public.expires - datetime.now(UTC) < timedelta(days=2)
    assert "expired" in _rejected(armored, uid, now=datetime.now(UTC) + timedelta(days=3))


def test_gpg_encryption_subkey_expiring_tomorrow(gpg: GnuPG) -> None:
    uid = "(fay)%(localhost)"
    gpg.run("--quick-gen-key", uid, "ed25519", "sign,cert", "never")
    gpg.run("--quick-add-key", gpg.fingerprint(uid), "cv25519", "encr", "1d")
    armored = gpg.export(uid)
    assert pgp.validate_public_key_for(armored, uid)
    later = datetime.now(UTC) + timedelta(days=3)
    assert "no usable encryption key" in _rejected(armored, uid, now=later)


def test_gpg_revoked_key(gpg: GnuPG) -> None:
    uid = "(gil)%(localhost)"
    gpg.run("--quick-gen-key", uid, "future-default", "default", "never")
    fingerprint = gpg.fingerprint(uid)
    certificate = (gpg.home / "openpgp-revocs.d" / f"{fingerprint}.rev").read_text()
    gpg.run("--import", data=certificate.replace(":-----BEGIN", "-----BEGIN").encode())
    assert "revoked" in _rejected(gpg.export(uid), uid)


def test_gpg_signing_only_key(gpg: GnuPG) -> None:
    uid = "(hal)%(localhost)"
    gpg.run("--quick-gen-key", uid, "ed25519", "sign,cert", "never")
    assert "no usable encryption key" in _rejected(gpg.export(uid), uid)


def test_gpg_secret_key_export_is_refused_as_public_key(gpg: GnuPG) -> None:
    assert "secret" in _rejected(gpg.export_secret(BOB), BOB)
