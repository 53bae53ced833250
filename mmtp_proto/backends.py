"""Open the store a configuration names: SQLite under the data directory (the default), or
the PostgreSQL database of a `postgresql://` URL."""

from __future__ import annotations

from pathlib import Path

from .storage import Storage

SQLITE_FILE = "mmtp.db"


def describe(database: str | None, data_dir: Path) -> str:
    """Where the store is, for a log line (no password)."""
    if database:
        from .store_postgres import redact

        return redact(database)
    return str(data_dir / SQLITE_FILE)


def open_store(database: str | None, data_dir: Path, *, fsync: bool = True) -> Storage:
    """The store for `database` (a PostgreSQL URL), or SQLite in `data_dir` when None.

    Creates or migrates the schema; raises StoreError when that fails or when the database
    was written by a newer version.
    """
    if database:
        # Imported here: an SQLite-only server never loads psycopg.
        from .store_postgres import PostgresStore

        return PostgresStore(database, fsync=fsync)
    from .store import Store

    return Store(data_dir / SQLITE_FILE, fsync=fsync)
