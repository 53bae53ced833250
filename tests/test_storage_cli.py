"""Choosing the storage from the command line: `--database postgresql://...` (or `database`
in the file) is checked before anything starts, and a database written by a newer version
stops the server with one clear line, not a traceback."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest
from helpers import new_request

from mmtp_proto.backends import open_store
from mmtp_proto.config import config_from_mapping
from mmtp_proto.errors import LocalError
from mmtp_proto.storage import StoreError


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mmtp_proto.server_cli", "--port", "0", "--no-tls", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_a_database_that_is_not_a_postgresql_url_is_a_usage_error(tmp_path) -> None:
    done = _run("--data-dir", str(tmp_path), "--database", "mysql://db/mmtp")
    assert done.returncode == 2
    assert "database must be a postgresql:// URL" in done.stderr
    with pytest.raises(LocalError, match="database must be a postgresql:// URL string"):
        config_from_mapping({"database": 5})
    with pytest.raises(LocalError, match="workers must be a whole number from 1 to 64"):
        config_from_mapping({"workers": 0}).validate()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_newer_schema_stops_the_server_with_one_clear_line(tmp_path, database) -> None:
    open_store(database, tmp_path).close()
    with psycopg.connect(database, autocommit=True) as db:
        db.execute("UPDATE mmtp_meta SET value = 7 WHERE name = 'schema_version'")
    done = _run("--data-dir", str(tmp_path), "--database", database)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("mmtp-server: error:") and "schema version 7, newer" in last, last
    assert "Traceback" not in done.stderr


def test_an_unreachable_database_is_one_clear_line(tmp_path) -> None:
    url = f"postgresql://nobody@/mmtp?host={tmp_path}/no-such-socket-dir"
    done = _run("--data-dir", str(tmp_path), "--database", url)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("mmtp-server: error: cannot open the database"), last
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_connection_lost_between_requests_is_replaced_without_an_error(
    tmp_path, database
) -> None:
    store = open_store(database, tmp_path)
    store.put_key("(bob)%(example.com)", "armored", "F", 1)
    store.commit()
    with psycopg.connect(database, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (store._db.info.backend_pid,))
    new_request(store)
    assert store.get_key("(bob)%(example.com)").fingerprint == "F"
    # Lost inside a transaction, the staged writes are gone: that is an error, once.
    store.put_key("(carol)%(example.com)", "armored", "G", 1)
    with psycopg.connect(database, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (store._db.info.backend_pid,))
    rollbacks = store.rollbacks
    with pytest.raises(StoreError):
        store.commit()
    assert store.rollbacks == rollbacks + 1 and not store.pending
    new_request(store)
    assert store.get_key("(carol)%(example.com)") is None
    store.close()
