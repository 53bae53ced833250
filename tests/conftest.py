"""Shared fixtures: real servers on free loopback ports, data and config dirs under tmp_path."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from configs import make_config

from mmtp_proto.known_servers import KnownServers
from mmtp_proto.server import Server

BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked `both_backends` (module-wide in the protocol-rule modules) run once on
    SQLite and once on PostgreSQL; every other test runs on SQLite only."""
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "both_backends"
    ):
        metafunc.parametrize("backend", BACKENDS, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The storage backend of this test's servers: "sqlite" unless parametrized."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def database(request: pytest.FixtureRequest, backend: str) -> Iterator[str | None]:
    """The `database` setting for this test's servers: None (SQLite in the data dir) or
    a PostgreSQL URL whose search_path is a fresh schema of this test's own (a schema costs
    a millisecond where a database costs a few hundred), dropped after it."""
    if backend == "sqlite":
        yield None
        return
    import psycopg

    server_url = str(request.getfixturevalue("postgres_server_url"))
    name = f"t_{uuid.uuid4().hex}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{name}"')
    yield f"{server_url}&options=-csearch_path%3D{name}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def make_store(tmp_path: Path, database: str | None) -> Iterator[Callable[[], Any]]:
    """Open this test's store (again: the same file or database each time); all are closed
    after the test."""
    from mmtp_proto.backends import open_store

    opened: list[Any] = []

    def make() -> Any:
        store = open_store(database, tmp_path / "data")
        opened.append(store)
        return store

    yield make
    for store in opened:
        with contextlib.suppress(Exception):
            store.close()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the user's real config, data or cache dirs."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var, sub in (
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_STATE_HOME", "state"),
    ):
        monkeypatch.setenv(var, str(home / sub))


@pytest.fixture
def start_server(tmp_path: Path, database: str | None) -> Iterator[Callable[..., Server]]:
    """Start servers on free ports (port 0), on this test's backend (`database`); all are
    stopped at teardown. Servers of one test share its database, as they share a data dir."""
    started: list[Server] = []

    def start(data_dir: Path | None = None, **overrides) -> Server:
        overrides.setdefault("database", database)
        server = Server(make_config(data_dir or tmp_path / "server", **overrides)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        with contextlib.suppress(Exception):
            server.stop()


@pytest.fixture
def server(start_server: Callable[..., Server]) -> Server:
    return start_server()


@pytest.fixture
def known_servers(tmp_path: Path) -> KnownServers:
    return KnownServers(tmp_path / "known_servers")


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """One real PostgreSQL for the whole test session (see tests/postgres_server.py).

    Skipped with a how-to when none is installed, unless MMTP_REQUIRE_POSTGRES is set (CI),
    where a missing server is a failure.
    """
    from postgres_server import HOW_TO_GET_ONE, find_bindir, running_postgres

    bindir = find_bindir()
    if bindir is None:
        if os.environ.get("MMTP_REQUIRE_POSTGRES"):
            pytest.fail(HOW_TO_GET_ONE)
        pytest.skip(HOW_TO_GET_ONE)
    with running_postgres(bindir) as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty database of its own for one test, dropped after it."""
    import psycopg

    name = f"t_{uuid.uuid4().hex}"
    with psycopg.connect(postgres_server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield postgres_server_url.replace("/mmtp?", f"/{name}?", 1)
    with psycopg.connect(postgres_server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
