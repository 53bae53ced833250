"""`mmtp-server`: read the configuration, start the server, stop cleanly on SIGINT/SIGTERM.

Exit status: 0 after a clean stop, 2 for a configuration or usage error, 1 when the server
cannot start (port in use, unreadable certificate, ...) or fails while running, 130 when
interrupted before it started. Errors meant for the operator are one line on stderr,
`mmtp-server: error: ...`, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

from . import __version__
from .config import LOG_LEVELS, ServerConfig, default_data_dir, load_config
from .errors import LocalError
from .log_limit import RepeatLimiter
from .registration import POLICIES
from .routing import parse_routes

PROG = "mmtp-server"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130

log = logging.getLogger("mmtp.cli")


def _version() -> str:
    try:
        return metadata.version("mmtp")
    except metadata.PackageNotFoundError:
        return __version__


def build_parser() -> argparse.ArgumentParser:
    defaults = ServerConfig()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "MMTP server. Settings come from the defaults, then the --config file, then the "
            "flags given here (a flag overrides the file; a flag not given keeps the file's "
            "value)."
        ),
    )
    # Every override defaults to None: with_overrides() then keeps the file's value.
    parser.add_argument(
        "--config",
        metavar="FILE",
        type=Path,
        help="TOML file; options under a [server] table or at the top level",
    )
    parser.add_argument(
        "--host",
        help=f"address to listen on (default {defaults.host}; 0.0.0.0 or :: for all)",
    )
    parser.add_argument(
        "--port",
        type=int,
        metavar="PORT",
        help=f"plain TCP port (default {defaults.port}; 0 picks a free one)",
    )
    parser.add_argument(
        "--secure-port",
        type=int,
        metavar="PORT",
        help=f"TLS port (default {defaults.secure_port}; 0 picks a free one)",
    )
    parser.add_argument(
        "--plain",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the plain TCP listener (default on)",
    )
    parser.add_argument(
        "--tls",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the TLS listener (default on)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help=f"mail store and self-signed certificate (default {default_data_dir()})",
    )
    parser.add_argument(
        "--database",
        metavar="URL",
        help="a postgresql://user@host/db URL to keep the mail in PostgreSQL, which several "
        "server processes and hosts can share (default: SQLite in DATA_DIR)",
    )
    parser.add_argument(
        "--domain",
        action="append",
        dest="domains",
        metavar="DOMAIN",
        help="a domain this server serves; repeat for several (replaces the file's list; "
        "default localhost)",
    )
    parser.add_argument(
        "--difficulty",
        type=int,
        metavar="BITS",
        help=f"HashCash bits a SEND must carry (default {defaults.difficulty})",
    )
    parser.add_argument(
        "--cert",
        type=Path,
        metavar="FILE",
        help="PEM certificate chain (default: a self-signed one in DATA_DIR/tls)",
    )
    parser.add_argument("--key", type=Path, metavar="FILE", help="PEM private key for --cert")
    parser.add_argument(
        "--allow-plain-auth",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="accept AUTH over the plain listener (default off: AUTH needs TLS)",
    )
    parser.add_argument(
        "--registration",
        choices=POLICIES,
        help="who may register a new address: open (default), invite (with a token from "
        "mmtp-admin accounts invite) or closed (mmtp-admin accounts add only)",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        help=f"log verbosity (default {defaults.log_level})",
    )
    parser.add_argument(
        "--pgp-workers",
        type=int,
        metavar="N",
        help=f"worker processes for OpenPGP checks (default {defaults.pgp_workers})",
    )
    parser.add_argument(
        "--worker-memory-mib",
        type=int,
        metavar="MIB",
        help=f"address space each worker may use (default {defaults.worker_memory_mib})",
    )
    parser.add_argument(
        "--job-deadline-seconds",
        type=float,
        metavar="SECONDS",
        help="how long one key or signature check may run before it is stopped and refused "
        f"(default {defaults.job_deadline_seconds:g})",
    )
    parser.add_argument(
        "--ready-file",
        type=Path,
        metavar="FILE",
        help="once listening, write JSON {pid, plain, tls, fingerprint} to FILE (atomically, "
        "mode 0600), for a program that started the server and waits for it",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="run N server processes sharing the ports (SO_REUSEPORT), supervised: a worker "
        f"that dies is restarted (default {defaults.workers}; more than one is best with "
        "--database postgresql://...)",
    )
    # Internal: how the supervisor starts each worker on the ports it holds.
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    relay = parser.add_argument_group("federation (SPEC §8)")
    relay.add_argument(
        "--relay",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="relay mail to other domains' servers and accept relayed mail (default off)",
    )
    relay.add_argument(
        "--route",
        action="append",
        dest="routes",
        metavar="DOMAIN=HOST:PORT",
        help="a static route, tried before DNS; repeat for several (replaces the file's table)",
    )
    relay.add_argument(
        "--dns-server", metavar="IP:PORT", help="ask this DNS server (default: the system's)"
    )
    relay.add_argument(
        "--relay-tls-verify",
        choices=("ca", "tofu", "insecure"),
        help="how a remote server's certificate is checked (default ca)",
    )
    relay.add_argument(
        "--relay-ca", type=Path, metavar="FILE", help="CA file for --relay-tls-verify ca"
    )
    relay.add_argument(
        "--allow-private-targets",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="let DNS send relays to loopback/private addresses (LAN federations, tests)",
    )
    relay.add_argument(
        "--retry-base",
        type=float,
        metavar="SECONDS",
        help=f"first retry delay of the outbound queue (default {defaults.retry_base:g})",
    )
    relay.add_argument(
        "--retry-max",
        type=float,
        metavar="SECONDS",
        help=f"longest retry delay of the outbound queue (default {defaults.retry_max:g})",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    return parser


def build_config(args: argparse.Namespace) -> ServerConfig:
    """Defaults, then the file, then the flags given; validated. Raises LocalError."""
    config = load_config(args.config) if args.config is not None else ServerConfig()
    overrides: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "secure_port": args.secure_port,
        "plain": args.plain,
        "tls": args.tls,
        "data_dir": args.data_dir.expanduser() if args.data_dir is not None else None,
        "domains": args.domains,
        "database": args.database,
        "workers": args.workers,
        "difficulty": args.difficulty,
        "cert": args.cert.expanduser() if args.cert is not None else None,
        "key": args.key.expanduser() if args.key is not None else None,
        "allow_plain_auth": args.allow_plain_auth,
        "log_level": args.log_level,
        "registration": args.registration,
        "ready_file": args.ready_file.expanduser() if args.ready_file is not None else None,
        "pgp_workers": args.pgp_workers,
        "worker_memory_mib": args.worker_memory_mib,
        "job_deadline_seconds": args.job_deadline_seconds,
    }
    if args.routes is not None:
        overrides["routes"] = {
            domain: f"{host}:{port}" for domain, (host, port) in parse_routes(args.routes).items()
        }
    overrides.update(
        relay=args.relay,
        dns_server=args.dns_server,
        relay_tls_verify=args.relay_tls_verify,
        relay_ca=args.relay_ca.expanduser() if args.relay_ca is not None else None,
        allow_private_targets=args.allow_private_targets,
        retry_base=args.retry_base,
        retry_max=args.retry_max,
    )
    return config.with_overrides(**overrides).validate()


def setup_logging(level: str, limit_lines: int = 0, limit_seconds: float = 10.0) -> None:
    """Log to stderr; with `limit_lines`, at most that many lines of one kind per
    `limit_seconds`, then one summary (log_limit)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_mmtp_cli", False)]:
        root.removeHandler(old)
    handler._mmtp_cli = True  # type: ignore[attr-defined]
    if limit_lines > 0:
        RepeatLimiter.install(handler, limit_lines, limit_seconds)
    root.addHandler(handler)
    root.setLevel(level)


def _error(message: object) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # Ctrl-C before the stop handlers were in place: nothing was running yet.
        return EXIT_INTERRUPTED


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = build_config(args)
    except LocalError as exc:
        _error(exc)
        return EXIT_CONFIG
    # Mail is private: whatever the server creates (store, WAL, certificates, ready file)
    # is its user's alone, whatever umask it was started with.
    os.umask(0o077)
    setup_logging(config.log_level, config.log_limit_lines, config.log_limit_seconds)
    log.info("%s %s starting", PROG, _version())
    if args.config is not None:
        log.info("configuration from %s", args.config)

    if config.workers > 1 and not args.reuse_port:
        return _supervise(config, sys.argv[1:] if argv is None else argv)

    try:
        from .server import Server

        server = Server(config, reuse_port=args.reuse_port)
    except LocalError as exc:
        _error(exc)
        return EXIT_CONFIG

    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        name = signal.Signals(signum).name
        if stopping:
            log.warning("%s again: already stopping (SIGKILL forces it)", name)
        else:
            stopping = True
            log.info("%s received: stopping", name)
        server.request_stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.serve_forever()
    except LocalError as exc:
        _error(exc)
        return EXIT_FAILURE
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        _error(f"{exc.strerror or exc}{where}")
        return EXIT_FAILURE
    except Exception:
        log.exception("the server stopped on an unexpected error")
        return EXIT_FAILURE
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK


def _supervise(config: ServerConfig, argv: list[str]) -> int:
    from .workers import Supervisor

    try:
        return Supervisor(config, argv).run()
    except LocalError as exc:
        _error(exc)
        return EXIT_FAILURE
    except OSError as exc:
        _error(exc.strerror or exc)
        return EXIT_FAILURE


if __name__ == "__main__":
    raise SystemExit(main())
