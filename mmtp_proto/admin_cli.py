"""`mmtp-admin`: the operator's command (SPEC §11), run on the server's host against its data.

It opens the server's store the way the server does: the PostgreSQL database of `--database`
or of the config file's `database` key, else the SQLite file `<data_dir>/mmtp.db` (WAL, with
a busy timeout). Each change is one short transaction, so it is safe while the server runs,
and every server process on that store sees it at its next request. Output is text for
people, or JSON with `--json`. Exit status: 0 done, 1 refused or failed (one sentence on
stderr, `mmtp-admin: error: ...`, never a traceback), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .admin_ops import Admin, domain_keys, format_size, format_time
from .config import ServerConfig, default_data_dir, load_config
from .errors import LocalError
from .store import Store, StoreError

if TYPE_CHECKING:
    from .store_postgres import PostgresStore

PROG = "mmtp-admin"
EXIT_OK = 0
EXIT_FAILURE = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Manage an MMTP server's accounts, quotas, reserved names, domain keys and "
        "outbound queue. "
        "Safe while the server runs; it sees every change at once.",
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="the server's TOML file")
    parser.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help=f"the server's data directory (default: the config's, or {default_data_dir()})",
    )
    parser.add_argument(
        "--database",
        metavar="URL",
        help="the server's postgresql:// database (default: the config's `database`, or "
        "SQLite in the data directory)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON, for scripts")
    areas = parser.add_subparsers(dest="area", required=True, metavar="AREA")

    accounts = areas.add_parser("accounts", help="list, invite, add, disable, delete addresses")
    verbs = accounts.add_subparsers(dest="verb", required=True, metavar="VERB")
    verbs.add_parser("list", help="every account, held name and pending invite")
    for verb, text in (
        ("invite", "make a one-time invite token for a new ADDRESS"),
        ("disable", "refuse AUTH as ADDRESS and mail to it (the mail is kept)"),
        ("enable", "undo disable"),
        ("delete", "delete ADDRESS's mailbox and key; the name is held for 30 days"),
        ("release", "let anyone claim a held ADDRESS again"),
    ):
        verbs.add_parser(verb, help=text).add_argument("address", metavar="ADDRESS")
    for verb, text in (
        ("add", "register ADDRESS with the public key in FILE (ignores the policy)"),
        ("reset-key", "replace ADDRESS's key (even a revoked one) with the key in FILE"),
    ):
        sub = verbs.add_parser(verb, help=text)
        sub.add_argument("address", metavar="ADDRESS")
        sub.add_argument("--key", type=Path, required=True, metavar="FILE")

    quota = areas.add_parser("quota", help="mailbox limits")
    verbs = quota.add_subparsers(dest="verb", required=True, metavar="VERB")
    verbs.add_parser("show", help="defaults and per-account limits").add_argument(
        "address", nargs="?", metavar="ADDRESS"
    )
    setter = verbs.add_parser("set", help="set ADDRESS's limits (`default` clears one)")
    setter.add_argument("address", metavar="ADDRESS")
    setter.add_argument("--messages", metavar="N")
    setter.add_argument("--bytes", metavar="SIZE", help="e.g. 500M, 2G")

    reserved = areas.add_parser("reserved", help="names nobody may register")
    verbs = reserved.add_subparsers(dest="verb", required=True, metavar="VERB")
    verbs.add_parser("list")
    verbs.add_parser("add").add_argument("name", metavar="NAME")
    verbs.add_parser("remove").add_argument("name", metavar="NAME")

    move = areas.add_parser(
        "migrate", help="copy the SQLite store into an empty PostgreSQL database and verify it"
    )
    move.add_argument("--to", required=True, metavar="URL", help="postgresql://... (empty)")

    keys = areas.add_parser("domain-key", help="the server's domain keys (federation)")
    verbs = keys.add_subparsers(dest="verb", required=True, metavar="VERB")
    verbs.add_parser("list")
    verbs.add_parser("rotate", help="make a new active key; the old one stays published")
    queue = areas.add_parser("queue", help="the outbound queue (federation)")
    verbs = queue.add_subparsers(dest="verb", required=True, metavar="VERB")
    verbs.add_parser("list", help="queued, delivered and bounced relay jobs")
    retry = verbs.add_parser("retry", help="try queued jobs now")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int, metavar="ID")
    which.add_argument("--all", action="store_true", help="every queued job")
    verbs.add_parser("remove", help="drop a queued job unsent").add_argument(
        "id", type=int, metavar="ID"
    )
    return parser


def _config(args: argparse.Namespace) -> tuple[ServerConfig, bool]:
    config = load_config(args.config) if args.config is not None else ServerConfig()
    if args.data_dir is not None:
        config.data_dir = args.data_dir.expanduser()
    if args.database is not None:
        if not args.database.startswith(("postgresql://", "postgres://")):
            raise LocalError("--database must be a postgresql:// URL")
        config.database = args.database
    return config.validate(), args.config is not None


def _open_store(config: ServerConfig) -> Store | PostgresStore:
    if config.database:
        return _open_postgres(config.database)
    path = Path(config.data_dir) / "mmtp.db"
    if not path.is_file():
        raise LocalError(
            f"there is no server database at {path}; give the server's --data-dir, "
            "--database or --config"
        )
    return Store(path)


def _open_postgres(url: str) -> PostgresStore:
    """The server's PostgreSQL store; refused, like a missing SQLite file, when the database
    holds no mmtp tables (a wrong URL must not get an empty schema made in it)."""
    # Imported here: an SQLite-only admin never loads psycopg.
    import psycopg

    from .store_postgres import PostgresStore, redact

    try:
        with psycopg.connect(url, connect_timeout=10) as db:
            found = db.execute("SELECT to_regclass('mmtp_meta')").fetchone()
    except psycopg.Error as exc:
        why = " ".join(str(exc).split())
        raise LocalError(f"cannot reach the database {redact(url)}: {why}") from None
    if found is None or found[0] is None:
        raise LocalError(
            f"there is no server database at {redact(url)} (no mmtp tables); check --database, "
            "or start the server on it once"
        )
    return PostgresStore(url)


def run(args: argparse.Namespace) -> tuple[Any, Callable[[Any], str]]:
    """Do what `args` says; return the result and how to show it as text."""
    config, knows_domains = _config(args)
    if args.area == "migrate":
        from .migrate import migrate

        if not str(args.to).startswith(("postgresql://", "postgres://")):
            raise LocalError("--to must be a postgresql:// URL")
        report = migrate(Path(config.data_dir) / "mmtp.db", args.to)
        return {"copied": report.counts, "digest": report.digest}, lambda _: str(report)
    if args.area == "domain-key":
        return domain_keys(Path(config.data_dir), args.verb == "rotate"), _text_domain_keys
    store = _open_store(config)
    try:
        if args.area == "queue":
            return _queue(store, args)
        admin = Admin(config, store, knows_domains)
        return _dispatch(admin, args)
    finally:
        store.close()


def _dispatch(admin: Admin, args: argparse.Namespace) -> tuple[Any, Callable[[Any], str]]:
    verb = (args.area, args.verb)
    if verb == ("accounts", "list"):
        return admin.list_accounts(), _text_accounts
    if verb == ("accounts", "invite"):
        return (
            admin.invite(args.address),
            lambda r: (
                f"invite for {r['email']} (valid until {format_time(r['expiresAt'])}):\n"
                + r["invite"]
            ),
        )
    if verb == ("accounts", "add"):
        return admin.add(
            args.address, args.key
        ), lambda r: f"{r['email']} registered with key {r['fingerprint']}"
    if verb == ("accounts", "reset-key"):
        return admin.reset_key(
            args.address, args.key
        ), lambda r: f"{r['email']} now has key {r['fingerprint']}"
    if verb in {("accounts", "disable"), ("accounts", "enable")}:
        return admin.set_disabled(
            args.address, args.verb == "disable"
        ), lambda r: f"{r['email']} {'disabled' if r['disabled'] else 'enabled'}"
    if verb == ("accounts", "delete"):
        return (
            admin.delete(args.address),
            lambda r: (
                f"{r['email']} deleted ({r['deletedMessages']} messages); the name is held "
                f"until {format_time(r['heldUntil'])}"
            ),
        )
    if verb == ("accounts", "release"):
        return admin.release(args.address), lambda r: f"{r['email']} may be registered again"
    if verb == ("quota", "show"):
        return admin.quota(args.address), _text_quota
    if verb == ("quota", "set"):
        return admin.set_quota(args.address, args.messages, args.bytes), _text_quota
    if args.area == "reserved":
        result = (
            admin.reserved()
            if args.verb == "list"
            else admin.reserve(args.name, args.verb == "add")
        )
        return result, _text_reserved
    raise LocalError(f"unknown command {args.area} {args.verb}")


def _queue(
    store: Store | PostgresStore, args: argparse.Namespace
) -> tuple[Any, Callable[[Any], str]]:
    """SPEC §11: the operator lists, retries now and removes queued relay jobs. A running
    server's delivery sees the change at its next look at the queue (within a second)."""
    if args.verb == "list":
        return {"jobs": store.queue_list()}, _text_queue
    now = int(time.time())
    if args.verb == "retry":
        count = store.queue_retry_now(now, None if args.all else args.id)
        store.commit()
        if not count and not args.all:
            raise LocalError(f"no queued job {args.id} (see: mmtp-admin queue list)")
        return {"retried": count}, lambda r: f"{r['retried']} job(s) will be tried now"
    if not store.queue_remove(args.id):
        raise LocalError(f"no queued job {args.id} (see: mmtp-admin queue list)")
    store.commit()
    return {"removed": args.id}, lambda r: f"job {r['removed']} removed; it will not be sent"


# ---------------------------------------------------------------------- text output


def _limit(value: int | None, default: int, size: bool = False) -> str:
    shown = format_size if size else str
    return f"{shown(value)}" if value is not None else f"{shown(default)} (default)"


def _text_accounts(result: dict[str, Any]) -> str:
    lines = []
    for a in result["accounts"]:
        state = "disabled" if a["disabled"] else "active"
        lines.append(
            f"{a['email']}  {state}  {a['messages']} messages, {format_size(a['bytes'])}  "
            f"key {a['fingerprint'] or '-'}  since {format_time(a['registeredAt'])}"
        )
    if not lines:
        lines.append("no accounts")
    lines += [f"{h['email']}  held until {format_time(h['until'])}" for h in result["held"]]
    lines += [
        f"{i['email']}  invited (until {format_time(i['expiresAt'])})" for i in result["invites"]
    ]
    return "\n".join(lines)


def _text_quota(result: dict[str, Any]) -> str:
    d = result["defaults"]
    if "email" not in result:
        lines = [f"default: {d['maxMessages']} messages, {format_size(d['maxBytes'])} per mailbox"]
        for a in result["accounts"]:
            lines.append(
                f"{a['email']}: {_limit(a['maxMessages'], d['maxMessages'])} messages, "
                f"{_limit(a['maxBytes'], d['maxBytes'], size=True)}"
            )
        return "\n".join(lines)
    return (
        f"{result['email']}: {result['messages']} of "
        f"{_limit(result['maxMessages'], d['maxMessages'])} messages, "
        f"{format_size(result['bytes'])} of {_limit(result['maxBytes'], d['maxBytes'], True)}"
    )


def _text_reserved(result: dict[str, Any]) -> str:
    lines = [f"{name}  (protocol)" for name in result["builtin"]]
    lines += [f"{name}  (config file)" for name in result["config"]]
    lines += [f"{name}  (added)" for name in result["added"]]
    return "\n".join(lines)


def _text_queue(result: dict[str, Any]) -> str:
    return (
        "\n".join(
            f"{j['id']}  {j['state']}  {j['sender']} -> {j['recipient']}  {j['messageId']}  "
            f"attempts {j['attempts']}"
            + (f"  next {format_time(j['nextAttempt'])}" if j["state"] == "queued" else "")
            + (f"  last {j['lastCode']}: {j['lastError']}" if j["lastCode"] else "")
            for j in result["jobs"]
        )
        or "the queue is empty"
    )


def _text_domain_keys(result: dict[str, Any]) -> str:
    return "\n".join(
        f"{k['id']}  {k['alg']}  {'active' if k['active'] else 'published'}  {k['publicKey']}"
        for k in result["keys"]
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result, as_text = run(args)
    except LocalError as exc:
        return _fail(str(exc))
    except (StoreError, sqlite3.Error) as exc:
        return _fail(f"the server database could not be used: {exc}")
    except OSError as exc:
        return _fail(f"{exc.strerror or exc} ({exc.filename})" if exc.filename else str(exc))
    print(json.dumps(result, indent=2, sort_keys=True) if args.json else as_text(result))
    return EXIT_OK


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    return EXIT_FAILURE


if __name__ == "__main__":
    raise SystemExit(main())
