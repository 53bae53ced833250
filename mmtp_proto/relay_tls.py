"""TLS for relaying to another domain's server (SPEC §8.2).

Modes: `ca` (default: the chain must verify against the system CAs or `ca_file`, and the leaf
must name the recipient domain; for a static route the route's host also passes; a name learned
from DNS alone never does), `tofu` (pin each target host's certificate on first use in the
server's own known-servers file, refuse a change), `insecure` (no check; operator's explicit
choice).

The name check is done here, after the handshake, rather than by OpenSSL's `check_hostname`:
that takes one name, and a static route accepts two. OpenSSL still verifies the chain in `ca`
mode (CERT_REQUIRED). The split suits a non-blocking relay: build `client_context()` once, do
the handshake however the loop likes (SNI = `server_hostname(domain)`), then call
`verify_peer(der, domain, target)`. `wrap_and_verify` does all of it on a blocking socket.

Every failure is `RelayCertificateError`, code REMOTE_UNAVAILABLE: temporary for the queue (the
remote operator may be mid-renewal) and logged loudly.
"""

from __future__ import annotations

import ipaddress
import logging
import select
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from .certs import fingerprint
from .domain_keys import cert_hash
from .errors import REMOTE_UNAVAILABLE, LocalError, MMTPError
from .known_servers import CertificateChanged, KnownServers
from .routing import Target

log = logging.getLogger("mmtp.relay_tls")

VerifyMode = Literal["ca", "tofu", "insecure"]
VERIFY_MODES: tuple[VerifyMode, ...] = ("ca", "tofu", "insecure")
KNOWN_SERVERS_NAME = "relay_known_servers"


class RelayCertificateError(MMTPError):
    """The remote's certificate did not pass: a temporary failure, logged loudly."""

    def __init__(self, message: str) -> None:
        super().__init__(REMOTE_UNAVAILABLE, message)


@dataclass
class RelayTLS:
    mode: VerifyMode = "ca"
    ca_file: Path | None = None
    known_servers: KnownServers | None = None
    _context: ssl.SSLContext | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in VERIFY_MODES:
            raise LocalError(f"relay TLS verification must be one of {', '.join(VERIFY_MODES)}")
        if self.ca_file is not None and self.mode != "ca":
            raise LocalError("a relay CA file only makes sense with verification 'ca'")
        if self.mode == "tofu" and self.known_servers is None:
            raise LocalError("relay verification 'tofu' needs a known-servers file")

    @classmethod
    def for_data_dir(
        cls, mode: VerifyMode, data_dir: Path, ca_file: Path | None = None
    ) -> RelayTLS:
        """The server's configuration: in `tofu` mode pins live in the data directory, apart
        from any user's known_servers file."""
        known = KnownServers(Path(data_dir) / KNOWN_SERVERS_NAME) if mode == "tofu" else None
        return cls(mode, ca_file, known)

    def client_context(self) -> ssl.SSLContext:
        if self._context is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.check_hostname = False  # verify_peer checks names (see module docstring)
            if self.mode == "ca":
                context.verify_mode = ssl.CERT_REQUIRED
                try:
                    if self.ca_file is not None:
                        context.load_verify_locations(cafile=str(self.ca_file))
                    else:
                        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
                except (OSError, ssl.SSLError) as exc:
                    raise LocalError(f"cannot load relay CA file {self.ca_file}: {exc}") from None
            else:
                context.verify_mode = ssl.CERT_NONE
            self._context = context
        return self._context

    @staticmethod
    def server_hostname(domain: str) -> str:
        """SNI: the recipient domain, so a server hosting several picks the right certificate."""
        return domain

    def verify_peer(self, der: bytes | None, domain: str, target: Target) -> str:
        """Check the leaf the remote sent for relaying to `domain` via `target`; returns its
        `certHash` (for DOMAIN_AUTH). Raises RelayCertificateError."""
        where = f"{target} (for {domain})"
        if not der:
            raise self._fail(f"{where} sent no TLS certificate")
        if self.mode == "ca":
            names = [domain]
            if target.source == "static":
                names.append(target.host)
            if not any(certificate_names_host(der, name) for name in names):
                raise self._fail(
                    f"the TLS certificate of {where} does not name {' or '.join(names)}"
                )
        elif self.mode == "tofu" and self.known_servers is not None:
            seen = fingerprint(der)
            try:
                if not self.known_servers.check(target.host, target.port, seen):
                    self.known_servers.pin(target.host, target.port, seen)
                    log.warning("relay: pinned %s:%d at first use: %s", *_hp(target), seen)
            except CertificateChanged as exc:
                raise self._fail(str(exc)) from None
        return cert_hash(der)

    def wrap_and_verify(
        self, sock: socket.socket, domain: str, target: Target, until: float | None = None
    ) -> tuple[ssl.SSLSocket, str]:
        """Blocking: TLS handshake on a connected socket, done by `until` (time.monotonic())
        when given, then `verify_peer`. The socket is closed on failure."""
        try:
            tls = self.client_context().wrap_socket(
                sock,
                server_hostname=self.server_hostname(domain),
                do_handshake_on_connect=until is None,
            )
            if until is not None:
                try:
                    _handshake_by(tls, until)
                except BaseException:
                    tls.close()
                    raise
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            raise self._fail(
                f"the TLS certificate of {target} (for {domain}) is not trusted: "
                f"{exc.verify_message}"
            ) from None
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise MMTPError(REMOTE_UNAVAILABLE, f"TLS with {target} failed: {exc}") from None
        try:
            return tls, self.verify_peer(tls.getpeercert(binary_form=True), domain, target)
        except BaseException:
            tls.close()
            raise

    @staticmethod
    def _fail(message: str) -> RelayCertificateError:
        log.error("relay TLS verification FAILED: %s", message)
        return RelayCertificateError(message)


def _handshake_by(tls: ssl.SSLSocket, until: float) -> None:
    """The handshake, finished by `until` however slowly the remote sends: a blocking socket's
    timeout counts per read, so a remote that trickles its certificate would never hit it."""
    timeout = tls.gettimeout()
    tls.setblocking(False)
    try:
        while True:
            try:
                tls.do_handshake()
                return
            except ssl.SSLWantReadError:
                want = ([tls], [])
            except ssl.SSLWantWriteError:
                want = ([], [tls])
            left = until - time.monotonic()
            if left <= 0:
                raise TimeoutError("the TLS handshake took too long")
            select.select(*want, [], left)
    finally:
        tls.settimeout(timeout)


def _hp(target: Target) -> tuple[str, int]:
    return target.host, target.port


def certificate_names_host(der: bytes, host: str) -> bool:
    """RFC 6125 matching against the subjectAltName only (the common name is ignored, as
    browsers and Python's `ssl` do): DNS names case-insensitively, a wildcard only as the whole
    leftmost label and matching exactly one label; IP literals against IP entries."""
    try:
        certificate = x509.load_der_x509_certificate(der)
        san = certificate.extensions.get_extension_for_oid(
            ExtensionOID.SUBJECT_ALTERNATIVE_NAME
        ).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        return ip in san.get_values_for_type(x509.IPAddress)
    wanted = host.lower().rstrip(".")
    return any(
        _dns_name_matches(pattern, wanted) for pattern in san.get_values_for_type(x509.DNSName)
    )


def _dns_name_matches(pattern: str, host: str) -> bool:
    pattern = pattern.lower().rstrip(".")
    if not pattern.startswith("*."):
        return "*" not in pattern and pattern == host
    suffix = pattern[2:]
    if "*" in suffix or "." not in suffix:
        return False  # no wildcards deeper down, none directly under a top-level domain
    label, _, rest = host.partition(".")
    return bool(label) and rest == suffix
