"""SPEC §7 TLS material: a self-signed certificate made once (key 0600), or the operator's own."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import shutil
import socket
import ssl
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from mmtp_proto.certs import ensure_certificate, fingerprint, server_ssl_context
from mmtp_proto.errors import LocalError

pytestmark = pytest.mark.secure

FINGERPRINT_FORMAT = re.compile(r"^(?:[0-9A-F]{2}:){31}[0-9A-F]{2}$")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _write_pair(
    directory: Path,
    *,
    days: int = 90,
    start: dt.datetime | None = None,
    name: str = "mail.example.com",
    key=None,
) -> tuple[Path, Path, x509.Certificate]:
    """A certificate/key pair as an operator would have it (e.g. from certbot)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = start or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "fullchain.pem", directory / "privkey.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path, certificate


# --- fingerprint --------------------------------------------------------------------------


def test_fingerprint_is_uppercase_colon_hex_sha256_of_the_der(tmp_path: Path) -> None:
    _, _, certificate = _write_pair(tmp_path)
    der = certificate.public_bytes(serialization.Encoding.DER)
    text = fingerprint(der)
    assert FINGERPRINT_FORMAT.match(text)
    assert text == certificate.fingerprint(hashes.SHA256()).hex(":").upper()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary to compare with")
def test_fingerprint_matches_what_openssl_prints(tmp_path: Path) -> None:
    cert_path, _, fp = ensure_certificate(tmp_path / "data", ["mail.example.com"])
    out = subprocess.run(
        ["openssl", "x509", "-in", str(cert_path), "-noout", "-fingerprint", "-sha256"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip().split("=", 1)[1] == fp


# --- the self-signed certificate ----------------------------------------------------------


def test_self_signed_certificate_is_created_with_key_0600_in_a_0700_directory(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    cert_path, key_path, fp = ensure_certificate(data_dir, ["mail.example.com"])
    assert cert_path == data_dir / "tls" / "server.crt"
    assert key_path == data_dir / "tls" / "server.key"
    assert _mode(key_path) == 0o600
    assert _mode(data_dir / "tls") == 0o700
    certificate = _load(cert_path)
    assert fp == certificate.fingerprint(hashes.SHA256()).hex(":").upper()
    assert FINGERPRINT_FORMAT.match(fp)
    private_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(private_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    if isinstance(private_key, rsa.RSAPrivateKey):
        assert private_key.key_size >= 2048


def test_key_file_is_created_0600_not_narrowed_afterwards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: dict[str, int] = {}
    real_open = os.open

    def recording_open(path, flags, mode=0o777, *args, **kwargs):
        if flags & os.O_CREAT:
            created[os.fspath(path)] = mode
        return real_open(path, flags, mode, *args, **kwargs)

    def no_chmod(*args, **kwargs):
        raise AssertionError("the key must be created 0600, not chmod-ed later")

    monkeypatch.setattr(os, "open", recording_open)
    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setattr(Path, "chmod", no_chmod)
    old_umask = os.umask(0)  # the mode must come from os.open itself, not from the umask
    try:
        _, key_path, _ = ensure_certificate(tmp_path / "data", ["localhost"])
    finally:
        os.umask(old_umask)
    key_modes = [mode for path, mode in created.items() if key_path.name in Path(path).name]
    assert key_modes == [0o600]
    assert _mode(key_path) == 0o600
    assert _mode(key_path.parent) == 0o700


def test_self_signed_certificate_names_the_domains_and_loopback(tmp_path: Path) -> None:
    cert_path, _, _ = ensure_certificate(tmp_path, ["Mail.Example.com", "example.org", "0.0.0.0"])
    san = _load(cert_path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {
        "mail.example.com",
        "example.org",
        "localhost",
    }
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }


def test_self_signed_certificate_is_valid_about_two_years(tmp_path: Path) -> None:
    cert_path, _, _ = ensure_certificate(tmp_path, ["localhost"])
    certificate = _load(cert_path)
    now = dt.datetime.now(dt.UTC)
    assert certificate.not_valid_before_utc <= now
    lifetime = certificate.not_valid_after_utc - now
    assert dt.timedelta(days=700) < lifetime < dt.timedelta(days=740)


def test_self_signed_certificate_is_reused_on_the_next_start(tmp_path: Path) -> None:
    first = ensure_certificate(tmp_path, ["localhost"])
    pem, key_pem = first[0].read_bytes(), first[1].read_bytes()
    second = ensure_certificate(tmp_path, ["localhost"])
    assert second == first
    assert first[0].read_bytes() == pem
    assert first[1].read_bytes() == key_pem


def test_a_new_domain_does_not_change_the_pinned_certificate(tmp_path: Path) -> None:
    first = ensure_certificate(tmp_path, ["localhost"])
    assert ensure_certificate(tmp_path, ["mail.example.com"]) == first


def test_expired_self_signed_certificate_is_replaced(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    old_cert, old_key, old = _write_pair(
        tls, days=30, start=dt.datetime.now(dt.UTC) - dt.timedelta(days=60)
    )
    old_cert.rename(tls / "server.crt")
    old_key.rename(tls / "server.key")
    (tls / "server.key").chmod(0o600)
    cert_path, _, fp = ensure_certificate(tmp_path, ["localhost"])
    assert fp != old.fingerprint(hashes.SHA256()).hex(":").upper()
    assert _load(cert_path).not_valid_after_utc > dt.datetime.now(dt.UTC)


def test_unreadable_self_signed_certificate_is_replaced(tmp_path: Path) -> None:
    _, _, old_fp = ensure_certificate(tmp_path, ["localhost"])
    (tmp_path / "tls" / "server.crt").write_text("not a certificate\n")
    cert_path, key_path, fp = ensure_certificate(tmp_path, ["localhost"])
    assert FINGERPRINT_FORMAT.match(fp)
    assert fp != old_fp
    assert _mode(key_path) == 0o600
    _load(cert_path)


def test_self_signed_certificate_whose_key_was_lost_is_replaced(tmp_path: Path) -> None:
    _, key_path, fp = ensure_certificate(tmp_path, ["localhost"])
    key_path.unlink()
    _, key_path, fp2 = ensure_certificate(tmp_path, ["localhost"])
    assert key_path.exists()
    assert fp2 != fp


# --- the operator's certificate -----------------------------------------------------------


def test_given_certificate_is_used_as_it_is(tmp_path: Path) -> None:
    cert_path, key_path, certificate = _write_pair(tmp_path / "le")
    data_dir = tmp_path / "data"
    result = ensure_certificate(data_dir, ["mail.example.com"], cert_path, key_path)
    assert result == (
        cert_path,
        key_path,
        certificate.fingerprint(hashes.SHA256()).hex(":").upper(),
    )
    assert not (data_dir / "tls").exists()


def test_given_certificate_that_does_not_exist_is_a_clear_error(tmp_path: Path) -> None:
    _, key_path, _ = _write_pair(tmp_path)
    missing = tmp_path / "missing.pem"
    with pytest.raises(LocalError, match=r"certificate file .*missing\.pem does not exist"):
        ensure_certificate(tmp_path, ["localhost"], missing, key_path)


def test_given_key_that_does_not_exist_is_a_clear_error(tmp_path: Path) -> None:
    cert_path, _, _ = _write_pair(tmp_path)
    with pytest.raises(LocalError, match=r"key file .*nokey\.pem does not exist"):
        ensure_certificate(tmp_path, ["localhost"], cert_path, tmp_path / "nokey.pem")


def test_given_key_that_is_not_readable_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert_path, key_path, _ = _write_pair(tmp_path)
    key_path.chmod(0)
    if os.geteuid() == 0:  # root reads any file: make this one refuse as it would for `mmtp`
        real_read_bytes = Path.read_bytes

        def read_bytes(self: Path) -> bytes:
            if self == key_path:
                raise PermissionError(13, "Permission denied", str(self))
            return real_read_bytes(self)

        monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(LocalError, match="not readable"):
        ensure_certificate(tmp_path, ["localhost"], cert_path, key_path)


def test_key_that_does_not_match_the_certificate_is_refused(tmp_path: Path) -> None:
    cert_path, _, _ = _write_pair(tmp_path / "a")
    _, other_key, _ = _write_pair(tmp_path / "b")
    with pytest.raises(LocalError, match="does not match"):
        ensure_certificate(tmp_path, ["localhost"], cert_path, other_key)


def test_given_certificate_that_is_not_pem_is_refused(tmp_path: Path) -> None:
    cert_path, key_path, _ = _write_pair(tmp_path)
    cert_path.write_text("hello\n")
    with pytest.raises(LocalError, match="no PEM certificate"):
        ensure_certificate(tmp_path, ["localhost"], cert_path, key_path)


def test_passphrase_protected_key_is_refused_without_prompting(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert_path, key_path, _ = _write_pair(tmp_path, key=key)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(LocalError, match="passphrase"):
        ensure_certificate(tmp_path, ["localhost"], cert_path, key_path)
    with pytest.raises(LocalError, match="passphrase"):
        server_ssl_context(cert_path, key_path)


def test_cert_without_key_is_refused(tmp_path: Path) -> None:
    cert_path, _, _ = _write_pair(tmp_path)
    with pytest.raises(LocalError, match="go together"):
        ensure_certificate(tmp_path, ["localhost"], cert_path, None)


# --- the TLS context ----------------------------------------------------------------------


def _serve_once(context: ssl.SSLContext) -> tuple[int, threading.Thread, list[BaseException]]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(10)
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.settimeout(10)
                tls.sendall(tls.recv(64).upper())
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)
        finally:
            listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread, errors


def test_tls_handshake_with_the_self_signed_certificate(tmp_path: Path) -> None:
    cert_path, key_path, fp = ensure_certificate(tmp_path, ["mail.example.com"])
    server_context = server_ssl_context(cert_path, key_path)
    assert server_context.minimum_version == ssl.TLSVersion.TLSv1_2
    port, thread, errors = _serve_once(server_context)

    client = ssl.create_default_context(cafile=str(cert_path))
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        client.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        assert fingerprint(der) == fp  # what a client pins is what the server logs
        tls.sendall(b"hello")
        assert tls.recv(64) == b"HELLO"
    thread.join(10)
    assert not errors


def test_tls_context_refuses_a_key_that_does_not_match(tmp_path: Path) -> None:
    cert_path, _, _ = _write_pair(tmp_path / "a")
    _, other_key, _ = _write_pair(tmp_path / "b")
    with pytest.raises(LocalError, match="does not match"):
        server_ssl_context(cert_path, other_key)


def test_tls_context_names_a_missing_file(tmp_path: Path) -> None:
    _, key_path, _ = _write_pair(tmp_path)
    with pytest.raises(LocalError, match=r"gone\.pem does not exist"):
        server_ssl_context(tmp_path / "gone.pem", key_path)
