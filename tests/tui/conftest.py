"""TUI fixtures: a real server (low difficulty), accounts with Ed25519 keys, settings files."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from pathlib import Path

import pytest

from mmtp_proto.keystore import Keystore
from mmtp_proto.known_servers import KnownServers
from mmtp_proto.server import Server
from mmtp_tui import config
from mmtp_tui.mailstore import MailStore
from mmtp_tui.session import AccountSession

ALICE = "(alice)%(localhost)"
BOB = "(bob)%(localhost)"


def account_for(server: Server, name: str, address: str) -> config.Account:
    host, port = server.plain_address
    _, secure = server.tls_address
    return config.Account(
        name=name,
        address=address,
        display_name=name.title(),
        host=host,
        port=port,
        secure_port=secure,
        verify="tofu",
    )


@pytest.fixture
def make_session(tmp_path: Path) -> Callable[..., AccountSession]:
    """A session for `name` with its own keystore and store (another user on this machine)."""

    stores: list[MailStore] = []

    def make(server: Server, name: str, address: str, *, register: bool = True) -> AccountSession:
        home = tmp_path / f"user-{name}"
        store = MailStore(home / "mail.sqlite3")
        stores.append(store)
        session = AccountSession(
            account_for(server, name, address),
            store=store,
            keystore=Keystore(home / "keystore"),
            known_servers=KnownServers(home / "known_servers"),
            on_new_fingerprint=lambda host, port, fp: True,
        )
        session.generate_key("ed25519", None)
        if register:
            session.register()
        return session

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def tui_settings(tmp_path: Path) -> Callable[..., config.Settings]:
    """Settings for the app under test, in the isolated config dir, with one account whose
    key is generated and registered."""

    def make(server: Server, name: str = "alice", address: str = ALICE) -> config.Settings:
        settings = config.Settings(path=config.default_config_path())
        settings.add_account(account_for(server, name, address))
        settings.save()
        return settings

    return make


@pytest.fixture
def cli_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., dict[str, str]]:
    """A user of this machine for the `mmtp` command: their own config and data dirs (as
    environment variables), an account in tui.toml and a registered key where mmtp-tui
    keeps them. Returns the environment; the last user made is the current one."""

    def make(
        server: Server, name: str, address: str, *, passphrase: str | None = None
    ) -> dict[str, str]:
        home = tmp_path / f"cli-{name}"
        env = {"HOME": str(home)}
        for var, sub in (
            ("XDG_CONFIG_HOME", "config"),
            ("XDG_DATA_HOME", "data"),
            ("XDG_CACHE_HOME", "cache"),
            ("XDG_STATE_HOME", "state"),
        ):
            env[var] = str(home / sub)
        for var, value in env.items():
            monkeypatch.setenv(var, value)
        settings = config.Settings(path=config.default_config_path())
        settings.add_account(account_for(server, name, address))
        settings.save()
        from mmtp_tui.session import default_keystore, default_store_path

        store = MailStore(default_store_path())
        session = AccountSession(
            settings.accounts[name],
            store=store,
            keystore=default_keystore(),
            known_servers=KnownServers(),
            on_new_fingerprint=lambda host, port, fp: True,
        )
        session.generate_key("ed25519", passphrase)
        session.register()
        store.close()
        return env

    return make


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run `async def` tests in a fresh event loop (no asyncio plugin is needed)."""
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        names = pyfuncitem._fixtureinfo.argnames
        kwargs = {name: pyfuncitem.funcargs[name] for name in names}
        asyncio.run(pyfuncitem.obj(**kwargs))
        return True
    return None
