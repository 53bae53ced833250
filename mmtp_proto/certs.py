"""TLS material for the server: an operator's certificate, or a self-signed one made once.

SPEC §7: with no certificate configured the server creates a self-signed one (private key file
mode 0600) and logs its SHA-256 fingerprint, so clients can pin it on first use. Everything here
uses `cryptography` and the stdlib `ssl`; nothing shells out to openssl.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .atomic_file import write_atomically
from .errors import LocalError

log = logging.getLogger("mmtp.certs")

TLS_DIR = "tls"
CERT_NAME = "server.crt"
KEY_NAME = "server.key"
VALIDITY = dt.timedelta(days=730)
# A certificate this close to its end is replaced at start rather than served until it dies.
RENEW_BEFORE = dt.timedelta(days=1)
# Clocks disagree; a certificate valid from "now" is refused by a client a minute behind.
BACKDATE = dt.timedelta(hours=1)
_ALWAYS_NAMES = ("localhost", "127.0.0.1", "::1")


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate as `AB:CD:...`, the text `openssl x509 -fingerprint -sha256`
    prints after `=`."""
    return x509.load_der_x509_certificate(der).fingerprint(hashes.SHA256()).hex(":").upper()


def ensure_certificate(
    data_dir: Path,
    hostnames: list[str],
    cert: Path | None = None,
    key: Path | None = None,
) -> tuple[Path, Path, str]:
    """Return `(cert_path, key_path, sha256_fingerprint)` of the certificate the server serves.

    With `cert` and `key` given, they are checked (present, readable, PEM, matching) and used as
    they are. Without them a self-signed certificate for `hostnames` (plus localhost, 127.0.0.1
    and ::1) lives in `data_dir/tls/`: created on the first start, reused afterwards (its
    fingerprint is what clients pin), and replaced only when it expired or cannot be read.
    """
    if (cert is None) != (key is None):
        raise LocalError("cert and key go together: give both, or neither for a self-signed one")
    if cert is not None and key is not None:
        return _check_given(Path(cert), Path(key))
    return _self_signed(Path(data_dir), hostnames)


def server_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS server context for `cert`/`key` (PEM), refusing anything older than TLS 1.2."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    # Clear words for a missing or unreadable file before OpenSSL's terse ones.
    _read(Path(cert), "certificate")
    _read(Path(key), "key")
    try:
        # The callable stops OpenSSL from prompting on the terminal for a passphrase.
        context.load_cert_chain(str(cert), str(key), password=_no_passphrase)
    except LocalError:
        raise
    except (ssl.SSLError, OSError) as exc:
        raise LocalError(
            f"cannot load TLS certificate {cert} with key {key}: {_ssl_reason(exc)}"
        ) from None
    return context


# --- an operator's certificate ------------------------------------------------------------


def _check_given(cert_path: Path, key_path: Path) -> tuple[Path, Path, str]:
    cert_pem = _read(cert_path, "certificate")
    key_pem = _read(key_path, "key")
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise LocalError(
            f"certificate file {cert_path} holds no PEM certificate "
            "(expected '-----BEGIN CERTIFICATE-----', e.g. certbot's fullchain.pem)"
        ) from None
    leaf = chain[0]
    private_key = _load_key(key_pem, key_path)
    if _public_der(leaf.public_key()) != _public_der(private_key.public_key()):
        raise LocalError(
            f"key {key_path} does not match certificate {cert_path} "
            "(with certbot, use fullchain.pem and privkey.pem of the same lineage)"
        )
    now = dt.datetime.now(dt.UTC)
    if leaf.not_valid_after_utc <= now:
        log.warning(
            "certificate %s expired on %s; clients that verify it will refuse to connect",
            cert_path,
            leaf.not_valid_after_utc.isoformat(),
        )
    elif leaf.not_valid_before_utc > now:
        log.warning("certificate %s is not valid before %s", cert_path, leaf.not_valid_before_utc)
    return cert_path, key_path, _fingerprint_of(leaf)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise LocalError(f"{what} file {path} does not exist") from None
    except PermissionError:
        raise LocalError(
            f"{what} file {path} is not readable by this user; "
            "make it readable by the account the server runs as"
        ) from None
    except IsADirectoryError:
        raise LocalError(f"{what} file {path} is a directory, not a file") from None
    except OSError as exc:
        raise LocalError(f"cannot read {what} file {path}: {exc.strerror}") from None


def _load_key(pem: bytes, path: Path):
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise LocalError(
            f"key file {path} is protected by a passphrase; the server needs an unencrypted key "
            "(keep it mode 0600, readable only by the server's user)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise LocalError(
            f"key file {path} holds no PEM private key this server can use "
            "(expected '-----BEGIN PRIVATE KEY-----' or an RSA/EC private key)"
        ) from None


# --- the self-signed certificate ----------------------------------------------------------


def _self_signed(data_dir: Path, hostnames: list[str]) -> tuple[Path, Path, str]:
    tls_dir = data_dir / TLS_DIR
    cert_path, key_path = tls_dir / CERT_NAME, tls_dir / KEY_NAME
    _make_private_dir(tls_dir)
    existing = _load_existing(cert_path, key_path)
    if existing is not None:
        missing = _names_missing(existing, hostnames)
        if missing:
            log.warning(
                "the self-signed certificate %s does not name %s; it is kept so that clients' "
                "pinned fingerprint stays valid (delete %s and %s to make a new one)",
                cert_path,
                ", ".join(missing),
                cert_path,
                key_path,
            )
        return cert_path, key_path, _fingerprint_of(existing)
    certificate = _create(cert_path, key_path, hostnames)
    fp = _fingerprint_of(certificate)
    log.info("created a self-signed TLS certificate %s (SHA-256 %s)", cert_path, fp)
    return cert_path, key_path, fp


def _make_private_dir(tls_dir: Path) -> None:
    try:
        tls_dir.parent.mkdir(parents=True, exist_ok=True)
        tls_dir.mkdir(mode=0o700, exist_ok=True)
        if tls_dir.stat().st_mode & 0o077:
            tls_dir.chmod(0o700)
    except OSError as exc:
        raise LocalError(
            f"cannot create the TLS directory {tls_dir}: {exc.strerror or exc}"
        ) from None


def _load_existing(cert_path: Path, key_path: Path) -> x509.Certificate | None:
    """The stored certificate if it can be served again, else None (and why, in the log)."""
    if not cert_path.exists() and not key_path.exists():
        return None
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        private_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        log.warning("replacing the self-signed certificate in %s: unreadable (%s)", cert_path, exc)
        return None
    if _public_der(certificate.public_key()) != _public_der(private_key.public_key()):
        log.warning("replacing the self-signed certificate %s: its key does not match", cert_path)
        return None
    if certificate.not_valid_after_utc - RENEW_BEFORE <= dt.datetime.now(dt.UTC):
        log.warning(
            "replacing the self-signed certificate %s: it expired (or expires) on %s; "
            "clients that pinned the old fingerprint must accept the new one",
            cert_path,
            certificate.not_valid_after_utc.isoformat(),
        )
        return None
    for path in (key_path, cert_path):
        _tighten(path)
    return certificate


def _tighten(path: Path) -> None:
    """Make a file of the self-signed pair 0600 again, saying so: others could read it."""
    try:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            path.chmod(0o600)
            log.warning("%s was mode %o (other users could read it); it is now 0600", path, mode)
    except OSError as exc:
        log.warning("%s is readable by other users and could not be made 0600: %s", path, exc)


def _names_missing(certificate: x509.Certificate, hostnames: list[str]) -> list[str]:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return list(hostnames)
    present = {n.lower() for n in san.get_values_for_type(x509.DNSName)}
    present |= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return [h for h in _clean_names(hostnames) if h not in present]


def _clean_names(hostnames: list[str]) -> list[str]:
    """Hostnames lowercased and deduplicated, unspecified addresses (0.0.0.0, ::) dropped."""
    names: list[str] = []
    for raw in [*hostnames, *_ALWAYS_NAMES]:
        name = raw.strip().lower()
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            ip = None
        if ip is not None:
            if ip.is_unspecified:
                continue
            name = str(ip)
        elif not name or not name.isascii():
            continue
        if name not in names:
            names.append(name)
    return names


def _create(cert_path: Path, key_path: Path, hostnames: list[str]) -> x509.Certificate:
    names = _clean_names(hostnames)
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    common_name = next((n for n in names if len(n) <= 64), "mmtp-server")
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mmtp-server self-signed"),
        ]
    )
    private_key = ec.generate_private_key(ec.SECP256R1())
    public_key = private_key.public_key()
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
        .sign(private_key, hashes.SHA256())
    )
    key_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    # Key first: a crash between the two renames leaves a key that does not match the old
    # certificate, which the next start notices and replaces.
    try:
        write_atomically(key_path, key_pem, 0o600)
        # Public, but SPEC §7 (this project's reading): every file of the data dir is 0600.
        write_atomically(cert_path, cert_pem, 0o600)
    except OSError as exc:
        raise LocalError(
            f"cannot write the self-signed certificate to {cert_path.parent}: {exc.strerror or exc}"
        ) from None
    return certificate


# --- small helpers ------------------------------------------------------------------------


def _fingerprint_of(certificate: x509.Certificate) -> str:
    return fingerprint(certificate.public_bytes(serialization.Encoding.DER))


def _public_der(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _no_passphrase() -> bytes:
    raise LocalError(
        "the TLS key is protected by a passphrase; the server needs an unencrypted key"
    )


def _ssl_reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    if reason == "KEY_VALUES_MISMATCH":
        return "the key does not match the certificate"
    if reason:
        return str(reason)
    return str(exc.args[-1]) if exc.args else str(exc)
