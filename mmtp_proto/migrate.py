"""Move a server's SQLite store into PostgreSQL: `mmtp-admin migrate --to URL` (also
`python -m mmtp_proto.migrate --data-dir DIR --to URL`).

Copies keys, messages (with their seq numbers, so clients' RECEIVE cursors stay valid, and
their checksums, so a damaged row stays detected), spent stamps, accounts and the relay
queue (its jobs go out from PostgreSQL), in one PostgreSQL
transaction into an empty database, then verifies: the same number of rows in each table
and the same digest over every message row. Stop the server first; start it again with
`--database URL`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import sqlite3
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from .backends import SQLITE_FILE
from .config import default_data_dir
from .errors import LocalError
from .storage import StoreError

TABLES = (
    "keys",
    "messages",
    "spent_stamps",
    "tombstones",
    "accounts",
    "invites",
    "held_names",
    "reserved_names",
    "outbound",
)
_COLUMNS = {
    "keys": "email, armored, fingerprint, registered_at",
    "messages": "seq, recipient, sender, message_id, message_hash, received_at, size, packet,"
    " checksum",
    "spent_stamps": "stamp, expires_at",
    "tombstones": "recipient, sender, message_id, message_hash, signature_verified, expires_at",
    "accounts": "email, disabled, max_messages, max_bytes",
    "invites": "digest, email, created_at, expires_at",
    "held_names": "email, until",
    "reserved_names": "name",
    # The relay queue without its claims: no delivery process holds one across a move.
    "outbound": "id, domain, recipient, sender, message_id, message_hash, packet, checksum,"
    " state, queued_at, next_attempt, expires_at, attempts, delay_notified, last_code,"
    " last_error, last_remote",
}
# SQLite keeps booleans as 0/1; PostgreSQL's columns are boolean.
_BOOLEANS = {"tombstones": 4, "accounts": 1}


@dataclass(frozen=True)
class Report:
    counts: dict[str, int]
    digest: str

    def __str__(self) -> str:
        rows = ", ".join(f"{n} {table}" for table, n in self.counts.items())
        return f"copied and verified {rows}; message digest {self.digest[:16]}"


def _digest(rows: Iterable[tuple[object, ...]]) -> str:
    h = hashlib.sha256()
    for seq, checksum in rows:
        h.update(f"{seq}:{checksum}\n".encode())
    return h.hexdigest()


def migrate(source: Path, target_url: str) -> Report:
    """Copy the SQLite store at `source` into the empty PostgreSQL database `target_url`."""
    if not source.exists():
        raise LocalError(f"there is no store at {source}")
    from .store import Store
    from .store_postgres import PostgresStore, redact

    try:
        Store(source).close()  # the source's schema is one this version understands
        target = PostgresStore(target_url)
    except StoreError as exc:
        raise LocalError(str(exc)) from None
    db = target._conn()
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, isolation_level=None)
    try:
        src.execute("BEGIN")  # one snapshot of the source
        counts: dict[str, int] = {}
        with db.transaction():
            for table in TABLES:
                row = db.execute(f"SELECT count(*) FROM {table}").fetchone()
                if row and row[0]:
                    raise LocalError(
                        f"the database {redact(target_url)} already holds {table}; "
                        "migrate into an empty one"
                    )
            for table in TABLES:
                columns = _COLUMNS[table]
                cursor = src.execute(f"SELECT {columns} FROM {table}")
                counts[table] = 0
                # COPY writes the given seq values, as INSERT ... OVERRIDING SYSTEM VALUE.
                with db.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    flag = _BOOLEANS.get(table)
                    for values in cursor:
                        if flag is not None:
                            values = (*values[:flag], bool(values[flag]), *values[flag + 1 :])
                        copy.write_row(values)
                        counts[table] += 1
            for table, column in (("messages", "seq"), ("outbound", "id")):
                db.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
                    f" coalesce((SELECT max({column}) FROM {table}), 0) + 1, false)"
                )
            db.execute("UPDATE mmtp_meta SET value = value + 1 WHERE name = 'key_version'")
            _verify(src, db, counts)
            digest = _digest(src.execute("SELECT seq, checksum FROM messages ORDER BY seq"))
        src.execute("COMMIT")
    except StoreError as exc:
        raise LocalError(str(exc)) from None
    finally:
        src.close()
        with contextlib.suppress(Exception):
            target.close()
    return Report(counts, digest)


def _verify(src: sqlite3.Connection, db: psycopg.Connection[Any], counts: dict[str, int]) -> None:
    for table in TABLES:
        row = db.execute(f"SELECT count(*) FROM {table}").fetchone()
        if row is None or row[0] != counts[table]:
            raise LocalError(f"verification failed: {table} has {row} rows, not {counts[table]}")
    ours = _digest(src.execute("SELECT seq, checksum FROM messages ORDER BY seq"))
    theirs = _digest(db.execute("SELECT seq, checksum FROM messages ORDER BY seq"))
    # The checksums themselves are checked against the copied text, as a RECEIVE would.
    bad = db.execute(
        "SELECT count(*) FROM messages WHERE encode(sha256(convert_to(packet, 'UTF8')), 'hex')"
        " <> checksum"
    ).fetchone()
    src_bad = sum(
        1
        for text, checksum in src.execute("SELECT packet, checksum FROM messages")
        if hashlib.sha256(text.encode()).hexdigest() != checksum
    )
    if ours != theirs or bad is None or bad[0] != src_bad:
        raise LocalError("verification failed: the copied messages differ from the source")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"the server's data directory holding {SQLITE_FILE} (default {default_data_dir()})",
    )
    parser.add_argument(
        "--to", required=True, metavar="URL", help="an empty PostgreSQL database (postgresql://)"
    )


def run(args: argparse.Namespace) -> int:
    data_dir = (args.data_dir or default_data_dir()).expanduser()
    try:
        if not str(args.to).startswith(("postgresql://", "postgres://")):
            raise LocalError("--to must be a postgresql:// URL")
        print(migrate(data_dir / SQLITE_FILE, args.to))
    except LocalError as exc:
        print(f"mmtp-admin migrate: error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mmtp-admin migrate",
        description="Copy an SQLite store into an empty PostgreSQL database and verify it.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
