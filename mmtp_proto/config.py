"""Server configuration: defaults, TOML loading and validation, with errors meant for people."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from .address import is_valid_domain
from .errors import LocalError
from .limits import DEFAULT_DIFFICULTY, DEFAULT_STAMP_VALIDITY_SECONDS
from .registration import POLICIES
from .routing import parse_routes

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("mmtp-server", appauthor=False))


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8025
    secure_port: int = 8026
    plain: bool = True
    tls: bool = True
    data_dir: Path = field(default_factory=default_data_dir)
    domains: list[str] = field(default_factory=lambda: ["localhost"])
    difficulty: int = DEFAULT_DIFFICULTY
    cert: Path | None = None
    key: Path | None = None
    allow_plain_auth: bool = False
    log_level: str = "INFO"
    # Log lines of one kind (one message template) per log_limit_seconds before the rest are
    # counted and summed up in one line; 0 turns the limit off (mmtp-server only).
    log_limit_lines: int = 30
    log_limit_seconds: float = 10.0
    server_name: str = "mmtp-server"
    max_frame_bytes: int = 4 * 1024 * 1024
    stamp_validity_seconds: int = DEFAULT_STAMP_VALIDITY_SECONDS
    idle_timeout: float = 300.0
    handshake_timeout: float = 10.0
    max_connections: int = 1024
    max_connections_per_ip: int = 32
    # Per IPv4 /24 or IPv6 /64 (admission.network_of): addresses come cheap, networks less so.
    max_connections_per_network: int = 128
    # Bytes of unfinished frames held across all connections; past it the largest is shed.
    unfinished_frames_budget: int = 64 * 1024 * 1024
    # An unfinished frame over 64 KiB that advances slower than this (bytes a second, over
    # windows of slow_frame_grace seconds) closes its connection; 0 turns the rule off.
    slow_frame_min_rate: int = 1024
    slow_frame_grace: float = 10.0
    # A client whose unread answers exceed this is not read from until it catches up.
    output_high_water: int = 1024 * 1024
    failure_limit: int = 10
    failure_window_seconds: float = 60.0
    failure_block_seconds: float = 300.0
    # AUTH failures count per (source IP, address) against failure_limit, and per source IP
    # against this higher ceiling (a NAT's users do not lock each other out).
    auth_source_failure_limit: int = 50
    # Worker processes for OpenPGP parsing and verification (never on the loop thread), the
    # address space each may use, and how long one job may run before its worker is killed.
    pgp_workers: int = 2
    worker_memory_mib: int = 512
    job_deadline_seconds: float = 2.0
    # Worker CPU seconds the jobs of one source IP may use per minute.
    source_cpu_seconds_per_minute: float = 60.0
    mailbox_max_messages: int = 100_000
    # SPEC §5: bytes of stored packets per mailbox (each packet as stored).
    mailbox_max_bytes: int = 1024**3
    # SPEC §5: "open", "invite" or "closed" (see registration.py).
    registration: str = "open"
    # Names nobody may claim besides the SPEC's own (postmaster, abuse, ...): the part of the
    # address before any "+". mmtp-admin can add more; those live in the database.
    reserved_names: list[str] = field(default_factory=list)
    # Successful new registrations per source address and hour.
    registrations_per_hour: int = 10
    fsync: bool = True
    # Where the mail lives: None is SQLite under data_dir; a postgresql:// URL is a
    # PostgreSQL database, which several server processes and hosts may share.
    database: str | None = None
    # Server processes sharing the listening ports (a supervisor restarts any that dies).
    workers: int = 1
    # Written (JSON: pid, plain and tls [host, port], fingerprint) once the server listens.
    ready_file: Path | None = None
    # Federation (SPEC §8). Off by default: a server relays only when its operator says so.
    relay: bool = False
    # Static routes, domain -> "host:port" (like Postfix transport maps); tried before DNS.
    routes: dict[str, str] = field(default_factory=dict)
    # "IP:PORT" of the DNS server to ask instead of the system's (tests, split horizon).
    dns_server: str | None = None
    relay_tls_verify: str = "ca"
    relay_ca: Path | None = None
    # Targets from DNS on loopback/private addresses are refused unless this is on (a LAN
    # federation, tests on loopback).
    allow_private_targets: bool = False
    # First retry delay of the outbound queue (doubling, capped at retry_max).
    retry_base: float = 60.0
    retry_max: float = 3600.0
    # A "delayed" DSN is sent once a message has waited this long in the queue.
    delay_notice_seconds: float = 4 * 3600.0
    # Connections per remote domain the delivery side keeps at most.
    relay_concurrency: int = 4
    # How long a delivery process's claim on a queued job lasts (renewed while it works): a
    # process that dies leaves its jobs to another after this long.
    relay_lease_seconds: float = 300.0
    # The longest one exchange with another server may take (connect, TLS and greeting; or
    # waiting for one answer), however slowly the remote trickles its bytes.
    relay_timeout: float = 60.0

    def validate(self) -> ServerConfig:
        problems: list[str] = []
        if not self.plain and not self.tls:
            problems.append("both listeners are off: enable plain or tls")
        for name in ("port", "secure_port"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= 65535:
                problems.append(f"{name} must be a port number 0-65535 (0 picks a free one)")
        if not self.domains:
            problems.append("domains must list at least one domain this server serves")
        self.domains = [d.lower() for d in self.domains]
        for domain in self.domains:
            if not is_valid_domain(domain):
                problems.append(f"domain {domain!r} is not a DNS name with a dot, or localhost")
        if not isinstance(self.difficulty, int) or not 0 <= self.difficulty <= 40:
            problems.append("difficulty must be a whole number of bits from 0 to 40")
        if (self.cert is None) != (self.key is None):
            problems.append("cert and key go together: give both, or neither for a self-signed one")
        if self.log_level.upper() not in LOG_LEVELS:
            problems.append(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        self.log_level = self.log_level.upper()
        if self.max_frame_bytes < 4096:
            problems.append("max_frame_bytes must be at least 4096")
        if self.registration not in POLICIES:
            problems.append(f"registration must be one of {', '.join(POLICIES)}")
        self.reserved_names = [n.lower() for n in self.reserved_names]
        for name in (
            "max_connections",
            "max_connections_per_ip",
            "max_connections_per_network",
            "failure_limit",
            "auth_source_failure_limit",
            "pgp_workers",
            "mailbox_max_messages",
            "mailbox_max_bytes",
            "registrations_per_hour",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        if self.worker_memory_mib < 64:
            problems.append("worker_memory_mib must be at least 64 (MiB of address space)")
        if self.unfinished_frames_budget < self.max_frame_bytes:
            problems.append(
                "unfinished_frames_budget must be at least max_frame_bytes (one whole frame)"
            )
        for name in ("slow_frame_min_rate", "log_limit_lines"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be 0 (off) or more")
        for name in (
            "idle_timeout",
            "handshake_timeout",
            "stamp_validity_seconds",
            "job_deadline_seconds",
            "source_cpu_seconds_per_minute",
            "slow_frame_grace",
            "log_limit_seconds",
            "relay_timeout",
        ):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive")
        if self.database is not None and not self.database.startswith(
            ("postgresql://", "postgres://")
        ):
            problems.append(
                "database must be a postgresql:// URL (leave it out for SQLite in data_dir)"
            )
        if not isinstance(self.workers, int) or not 1 <= self.workers <= 64:
            problems.append("workers must be a whole number from 1 to 64")
        problems.extend(self._relay_problems())
        if problems:
            raise LocalError("invalid server configuration:\n  - " + "\n  - ".join(problems))
        return self

    def _relay_problems(self) -> list[str]:
        problems: list[str] = []
        if self.relay and not self.tls:
            problems.append("relay needs the TLS listener (relays never use plain TCP)")
        if self.relay_tls_verify not in ("ca", "tofu", "insecure"):
            problems.append("relay_tls_verify must be one of ca, tofu, insecure")
        if self.relay_ca is not None and self.relay_tls_verify != "ca":
            problems.append("relay_ca only makes sense with relay_tls_verify = 'ca'")
        try:
            self.routes = {
                domain: f"{host}:{port}"
                for domain, (host, port) in parse_routes(
                    f"{d}={t}" for d, t in self.routes.items()
                ).items()
            }
        except (LocalError, ValueError) as exc:
            problems.append(f"routes: {exc}")
        if self.retry_base <= 0 or self.retry_max < self.retry_base:
            problems.append("retry_base must be positive and at most retry_max")
        if self.relay_lease_seconds < 1:
            problems.append("relay_lease_seconds must be at least 1")
        if self.delay_notice_seconds <= 0 or self.relay_concurrency < 1:
            problems.append("delay_notice_seconds must be positive, relay_concurrency at least 1")
        return problems

    def with_overrides(self, **overrides: Any) -> ServerConfig:
        clean = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **clean)


_PATH_FIELDS = {"data_dir", "cert", "key", "ready_file", "relay_ca"}
_LIST_FIELDS = {"domains", "reserved_names"}
_KIND = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}


def config_from_mapping(values: dict[str, Any], source: str = "config") -> ServerConfig:
    """Build a config from TOML-like keys (`secure-port` and `secure_port` both accepted)."""
    known = {f.name: f for f in dataclasses.fields(ServerConfig)}
    kwargs: dict[str, Any] = {}
    for raw_key, value in values.items():
        key = raw_key.replace("-", "_")
        if key not in known:
            raise LocalError(f"{source}: unknown option {raw_key!r}")
        if key in _PATH_FIELDS:
            if not isinstance(value, str):
                raise LocalError(f"{source}: {raw_key} must be a path string")
            value = Path(value).expanduser()
        elif key == "database":
            if not isinstance(value, str):
                raise LocalError(f"{source}: {raw_key} must be a postgresql:// URL string")
        elif key in _LIST_FIELDS:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(d, str) for d in value):
                raise LocalError(f"{source}: {raw_key} must be a list of strings")
        elif key == "routes":
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise LocalError(f'{source}: routes must be a table of domain = "host:port"')
        elif key == "dns_server":
            if not isinstance(value, str):
                raise LocalError(f'{source}: dns_server must be a string "IP:PORT"')
        else:
            expected = type(getattr(ServerConfig(), key))
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise LocalError(f"{source}: {raw_key} must be {_KIND[expected]}")
        kwargs[key] = value
    return ServerConfig(**kwargs)


def load_config(path: Path) -> ServerConfig:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise LocalError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise LocalError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise LocalError(f"config file {path} is not valid TOML: {exc}") from None
    section = data.get("server", data)
    if not isinstance(section, dict):
        raise LocalError(f"{path}: [server] must be a table")
    return config_from_mapping(section, str(path))
