"""SPEC §8.2 relay TLS: real handshakes on 127.0.0.1 with a test CA made by `cryptography`."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mmtp_proto.certs import ensure_certificate, server_ssl_context
from mmtp_proto.errors import REMOTE_UNAVAILABLE, LocalError
from mmtp_proto.known_servers import KnownServers
from mmtp_proto.relay_tls import RelayCertificateError, RelayTLS, certificate_names_host
from mmtp_proto.routing import Target

NOW = dt.datetime.now(dt.UTC)


class CA:
    """A throwaway certificate authority writing PEM files under `directory`."""

    def __init__(self, directory: Path, name: str = "Test CA") -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(hours=1))
            .not_valid_after(NOW + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        self.path = directory / f"{name.replace(' ', '_')}.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def leaf(self, label: str, names: list[str]) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for name in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(hours=1))
            .not_valid_after(NOW + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_path = self.directory / f"{label}.crt"
        key_path = self.directory / f"{label}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path


@contextlib.contextmanager
def tls_server(cert: Path, key: Path) -> Iterator[int]:
    """A TLS listener on 127.0.0.1 that completes handshakes and holds each connection until
    the client closes it."""
    context = server_ssl_context(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            raw.settimeout(5)
            with (
                contextlib.suppress(OSError, ssl.SSLError),
                context.wrap_socket(raw, server_side=True) as tls,
            ):
                tls.recv(1)
            raw.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def relay(relay_tls: RelayTLS, port: int, domain: str, target: Target) -> str:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    tls, digest = relay_tls.wrap_and_verify(sock, domain, target)
    der = tls.getpeercert(binary_form=True)
    tls.close()
    assert digest == hashlib.sha256(der).hexdigest()
    return digest


def srv(port: int, host: str = "mx.b.test") -> Target:
    return Target(host, port, "srv", ("127.0.0.1",))


@pytest.fixture
def ca(tmp_path: Path) -> CA:
    return CA(tmp_path)


# --- ca ----------------------------------------------------------------------------------


def test_ca_right_name_accepted(ca: CA) -> None:
    with tls_server(*ca.leaf("b", ["b.test"])) as port:
        relay(RelayTLS("ca", ca.path), port, "b.test", srv(port))


def test_ca_wrong_name_refused(ca: CA) -> None:
    # The certificate names the SRV target, not the domain: a name from DNS alone never passes.
    with (
        tls_server(*ca.leaf("mx", ["mx.b.test", "wrong.test"])) as port,
        pytest.raises(RelayCertificateError) as info,
    ):
        relay(RelayTLS("ca", ca.path), port, "b.test", srv(port))
    assert info.value.code == REMOTE_UNAVAILABLE
    assert "does not name b.test" in info.value.message


def test_ca_untrusted_issuer_refused(ca: CA, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    rogue = CA(tmp_path / "other", "Rogue CA")
    with (
        tls_server(*rogue.leaf("b", ["b.test"])) as port,
        pytest.raises(RelayCertificateError) as info,
    ):
        relay(RelayTLS("ca", ca.path), port, "b.test", srv(port))
    assert "not trusted" in info.value.message


def test_ca_static_route_host_also_passes(ca: CA) -> None:
    with tls_server(*ca.leaf("route", ["relay.internal", "127.0.0.1"])) as port:
        tls = RelayTLS("ca", ca.path)
        relay(tls, port, "b.test", Target("relay.internal", port, "static"))
        relay(tls, port, "b.test", Target("127.0.0.1", port, "static"))
        # The same host learned from DNS does not.
        with pytest.raises(RelayCertificateError):
            relay(tls, port, "b.test", srv(port, "relay.internal"))


def test_ca_wildcard_certificate(ca: CA) -> None:
    with tls_server(*ca.leaf("wild", ["*.b.test"])) as port:
        tls = RelayTLS("ca", ca.path)
        relay(tls, port, "mail.b.test", srv(port))
        with pytest.raises(RelayCertificateError):
            relay(tls, port, "b.test", srv(port))


def test_ca_refuses_a_self_signed_server_certificate(tmp_path: Path, ca: CA) -> None:
    cert, key, _ = ensure_certificate(tmp_path / "data", ["b.test"])
    with tls_server(cert, key) as port, pytest.raises(RelayCertificateError):
        relay(RelayTLS("ca", ca.path), port, "b.test", srv(port))


def test_missing_ca_file_is_a_local_error(tmp_path: Path) -> None:
    with pytest.raises(LocalError):
        RelayTLS("ca", tmp_path / "missing.pem").client_context()


# --- tofu and insecure -------------------------------------------------------------------


def test_tofu_pins_then_refuses_a_change(tmp_path: Path, ca: CA) -> None:
    tofu = RelayTLS.for_data_dir("tofu", tmp_path / "data")
    assert tofu.known_servers is not None
    first = ca.leaf("one", ["anything.test"])
    with tls_server(*first) as port:
        target = srv(port)
        digest = relay(tofu, port, "b.test", target)
        assert relay(tofu, port, "b.test", target) == digest
        assert tofu.known_servers.get(target.host, port) is not None
        assert (tmp_path / "data" / "relay_known_servers").exists()
    with tls_server(*ca.leaf("two", ["anything.test"])) as port2:
        # Same host and port pinned to the first certificate: simulate by pinning it there.
        tofu.known_servers.pin(target.host, port2, tofu.known_servers.get(target.host, port))
        with pytest.raises(RelayCertificateError) as info:
            relay(tofu, port2, "b.test", srv(port2))
    assert "CHANGED" in info.value.message and info.value.code == REMOTE_UNAVAILABLE


def test_insecure_accepts_anything(tmp_path: Path, ca: CA) -> None:
    (tmp_path / "x").mkdir()
    rogue = CA(tmp_path / "x", "Rogue")
    with tls_server(*rogue.leaf("z", ["nothing.test"])) as port:
        relay(RelayTLS("insecure"), port, "b.test", srv(port))


def test_configuration_mistakes(tmp_path: Path) -> None:
    with pytest.raises(LocalError):
        RelayTLS("maybe")  # type: ignore[arg-type]
    with pytest.raises(LocalError):
        RelayTLS("tofu")
    with pytest.raises(LocalError):
        RelayTLS("insecure", tmp_path / "ca.pem")
    assert RelayTLS.for_data_dir("ca", tmp_path).known_servers is None
    assert isinstance(RelayTLS("tofu", known_servers=KnownServers(tmp_path / "k")), RelayTLS)


def test_verify_peer_without_certificate() -> None:
    with pytest.raises(RelayCertificateError):
        RelayTLS("insecure").verify_peer(None, "b.test", Target("h", 1, "static"))


# --- name matching -----------------------------------------------------------------------


def test_name_matching_rules(ca: CA) -> None:
    cert, _ = ca.leaf("names", ["B.Test", "*.mail.b.test", "10.0.0.1", "::1"])
    der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    assert certificate_names_host(der, "b.test")
    assert certificate_names_host(der, "B.TEST.")
    assert certificate_names_host(der, "x.mail.b.test")
    assert not certificate_names_host(der, "mail.b.test")
    assert not certificate_names_host(der, "y.x.mail.b.test")
    assert not certificate_names_host(der, "c.test")
    assert certificate_names_host(der, "10.0.0.1") and certificate_names_host(der, "::1")
    assert not certificate_names_host(der, "10.0.0.2")
    assert not certificate_names_host(b"not der", "b.test")
    bad, _ = ca.leaf("bad", ["*.test", "x*.b.test"])
    bad_der = x509.load_pem_x509_certificate(bad.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    assert not certificate_names_host(bad_der, "b.test")
    assert not certificate_names_host(bad_der, "xy.b.test")
