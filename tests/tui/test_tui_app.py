"""Pilot tests: each flow of the app against a real server at a low difficulty."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Select, TextArea
from textual.worker import WorkerState

from mmtp_tui import config
from mmtp_tui.app import MailApp
from mmtp_tui.screens.compose import ComposeScreen
from mmtp_tui.screens.dialogs import ConfirmScreen, NewPassphraseScreen, PassphraseScreen
from mmtp_tui.screens.keys import KeysScreen
from mmtp_tui.screens.main import MainScreen
from mmtp_tui.screens.setup import SetupScreen
from mmtp_tui.widgets.message_list import MessageList

ALICE = "(alice)%(localhost)"
BOB = "(bob)%(localhost)"
SIZE = (100, 30)


def busy(app) -> bool:
    return any(w.state in (WorkerState.PENDING, WorkerState.RUNNING) for w in app.workers)


async def settle(app, pilot, tries=1000):
    """Wait until no worker runs, or a question waits for an answer (a worker may be blocked
    on it: waiting for all workers then would never end)."""
    await pilot.pause()
    for _ in range(tries):
        if not busy(app) or isinstance(app.screen, ConfirmScreen):
            break
        await pilot.pause(0.02)
    await pilot.pause()


async def wait_for_screen(app, pilot, kind, tries=1000):
    """The screen of `kind`, once it is on top *and mounted*, and what its mounting queued
    has run. A screen is on top as soon as it is pushed, before it is composed: a test that
    left run_test then would tear the app down from outside under a mounting screen, and
    Header's title update, queued at its mount, would find its title widget removed
    already (NoMatches) or never run at all."""
    for _ in range(tries):
        screen = app.screen
        if isinstance(screen, kind) and screen.is_mounted:
            await pilot.pause()  # runs the callbacks queued before it, Header's among them
            return screen
        await pilot.pause(0.02)
    notes = [n.message for n in app._notifications]
    raise AssertionError(f"{kind.__name__} never showed; on {type(app.screen).__name__}: {notes}")


def reader_text(app) -> str:
    return str(app.screen.query_one("#reader-text").render())


async def test_first_run_setup_registers_a_new_account(server):
    host, port = server.plain_address
    _, secure = server.tls_address
    app = MailApp(config.load())
    async with app.run_test(size=SIZE) as pilot:
        screen = await wait_for_screen(app, pilot, SetupScreen)
        await pilot.press("down")  # Server: ( ) local  (●) connect to a server
        screen.query_one("#address", Input).value = ALICE
        screen.query_one("#host", Input).value = host
        screen.query_one("#port", Input).value = str(port)
        screen.query_one("#secure-port", Input).value = str(secure)
        screen.query_one("#algorithm", Select).value = "ed25519"
        await pilot.press("ctrl+s")
        confirm = await wait_for_screen(app, pilot, ConfirmScreen)
        assert server.tls_fingerprint in confirm.question.replace(":\n", ":")
        await pilot.press("y")
        await wait_for_screen(app, pilot, MainScreen)
        await settle(app, pilot)  # the first fetch ends before the app is torn down
    saved = config.load()
    assert saved.account.address == ALICE
    assert saved.path.stat().st_mode & 0o777 == 0o600


async def test_setup_by_keyboard_alone_connects_to_the_given_server_and_pins_it(server):
    """Choosing "Connect to a server" with the arrow keys, then filling every field by
    typing: the account points at that host and those ports, and the certificate the user
    accepted is pinned (tofu)."""
    from mmtp_proto.known_servers import KnownServers

    host, port = server.plain_address
    _, secure = server.tls_address
    app = MailApp(config.load())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await wait_for_screen(app, pilot, SetupScreen)
        assert screen.query_one("#host", Input).disabled  # local server chosen at first
        await pilot.press("down")  # (●) Connect to a server
        await pilot.pause()
        assert not screen.query_one("#host", Input).disabled

        async def retype(text: str) -> None:
            await pilot.press("tab", "ctrl+a", "ctrl+k", *text)

        await retype(host)
        await retype(str(port))
        await retype(str(secure))
        await pilot.press("tab")  # TLS verification: tofu (the default) stays
        await retype(ALICE)
        await retype("Alice")
        await pilot.press("tab", "enter", "down", "enter")  # key: Ed25519
        await pilot.pause()
        assert screen.query_one("#algorithm", Select).value == "ed25519"
        await pilot.press("ctrl+s")
        confirm = await wait_for_screen(app, pilot, ConfirmScreen)
        assert server.tls_fingerprint in confirm.question.replace(":\n", ":")
        await pilot.press("y")
        await wait_for_screen(app, pilot, MainScreen)
        await settle(app, pilot)
        assert app.local_server is None  # no server of our own was started
    account = config.load().account
    assert (account.address, account.host, account.port, account.secure_port) == (
        ALICE,
        host,
        port,
        secure,
    )
    assert not account.local_server and account.verify == "tofu"
    assert KnownServers().get(host, secure) == server.tls_fingerprint


async def test_compose_send_receive_read_reply_thread(server, make_session, tui_settings):
    bob = make_session(server, "bob", BOB)
    settings = tui_settings(server)
    app = MailApp(settings, known_servers=bob.known_servers)
    alice_app_session = None
    async with app.run_test(size=SIZE) as pilot:
        main = await wait_for_screen(app, pilot, MainScreen)
        alice_app_session = main.session
        # Alice has no key yet in this keystore: make and register one through the session.
        alice_app_session.generate_key("ed25519", None)
        alice_app_session.register()
        await pilot.press("c")
        compose = await wait_for_screen(app, pilot, ComposeScreen)
        compose.query_one("#to", Input).value = BOB
        compose.query_one("#subject", Input).value = "Lunch?"
        compose.query_one("#body", TextArea).text = "At noon, encrypted."
        await pilot.press("ctrl+s")
        await wait_for_screen(app, pilot, MainScreen)
        await settle(app, pilot)
        assert main.store.folder("alice", "Sent")[0].subject == "Lunch?"

        # Bob reads it (logic side), replies.
        from mmtp_tui.sync import fetch

        fetch(bob)
        (got,) = bob.store.folder("bob", "Inbox")
        assert got.encrypted and got.signature == "verified"
        from mmtp_proto.minter import Minter
        from mmtp_proto.outgoing import Outgoing

        reply = Outgoing(
            to=[ALICE],
            subject="Re: Lunch?",
            body="Yes!",
            type="REPLY",
            in_reply_to=got.message_id,
            references=[got.message_id],
        )
        with bob.connected() as client:
            bob.send(client, reply, minter=Minter(processes=1))

        # Alice fetches and reads the reply: decrypted, verified, thread shown.
        await pilot.press("F")
        await settle(app, pilot)
        table = main.query_one(MessageList)
        assert table.row_count == 1
        await pilot.press("2", "enter")
        await settle(app, pilot)
        text = reader_text(app)
        assert "Yes!" in text
        assert "Signature verified" in text and "Encrypted" in text
        assert "Thread" in text and "Lunch?" in text
        assert main.store.folder("alice", "Inbox")[0].read

        # Reply from the reader: a thread of three, indented under its parent in Sent.
        await pilot.press("r")
        compose = await wait_for_screen(app, pilot, ComposeScreen)
        assert compose.query_one("#subject", Input).value == "Re: Lunch?"
        compose.query_one("#body", TextArea).text = "See you."
        await pilot.press("ctrl+s")
        await wait_for_screen(app, pilot, MainScreen)
        await settle(app, pilot)
        thread = main.store.thread("alice", got.message_id)
        assert [m.body for m in thread] == ["At noon, encrypted.", "Yes!", "See you."]

        # Search over decrypted bodies.
        await pilot.press("slash")
        await pilot.pause()
        await pilot.press(*"noon", "enter")
        await settle(app, pilot)
        assert [m.subject for m in main.shown] == ["Lunch?"]


async def test_passphrase_asked_once_and_offline_start(server, make_session, tui_settings):
    settings = tui_settings(server)
    app = MailApp(settings)
    # A protected key in the app's keystore, then the server goes away.
    from mmtp_tui.session import AccountSession, default_keystore

    session = AccountSession(settings.account, store=app.store, keystore=default_keystore())
    session.generate_key("ed25519", "s3cret")
    server.stop()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_screen(app, pilot, PassphraseScreen)
        await pilot.press(*"wrong", "enter")
        await wait_for_screen(app, pilot, PassphraseScreen)
        await pilot.press(*"s3cret", "enter")
        main = await wait_for_screen(app, pilot, MainScreen)
        await settle(app, pilot)
        assert main.session.key() is not None
        assert any("Offline" in (n.title or "") for n in app._notifications)


async def test_keys_pane_generates_and_registers(server, tui_settings, known_servers):
    settings = tui_settings(server)
    known_servers.pin(*server.tls_address, server.tls_fingerprint)
    app = MailApp(settings, known_servers=known_servers)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_screen(app, pilot, MainScreen)
        await pilot.press("K")
        keys = await wait_for_screen(app, pilot, KeysScreen)
        await settle(app, pilot)
        await pilot.press("g")
        await pilot.pause()
        await pilot.press("down", "enter")  # Ed25519
        await wait_for_screen(app, pilot, NewPassphraseScreen)
        await pilot.press("enter", "enter")  # no passphrase (typed twice)
        await wait_for_screen(app, pilot, KeysScreen)
        await settle(app, pilot)
        assert keys.session.key_info().algorithm.lower().startswith("ed")
        await pilot.press("r")
        await settle(app, pilot)
        assert keys.registered == keys.session.key().public.fingerprint
        assert "registered on the server" in str(keys.query_one("#my-key").render())


async def test_key_change_warning_is_loud(server, make_session, tui_settings):
    bob = make_session(server, "bob", BOB)
    settings = tui_settings(server)
    app = MailApp(settings, known_servers=bob.known_servers)
    async with app.run_test(size=SIZE) as pilot:
        main = await wait_for_screen(app, pilot, MainScreen)
        main.session.generate_key("ed25519", None)
        main.session.register()
        main.session.fetch_contact(BOB)
        old = bob.key()
        bob.generate_key("ed25519", None)
        with bob.connected(auth=False) as client:
            client.auth(BOB, old)
            client.register_key(BOB, bob.key().public.armored)
        await pilot.press("c")
        compose = await wait_for_screen(app, pilot, ComposeScreen)
        compose.query_one("#to", Input).value = BOB
        compose.query_one("#body", TextArea).text = "hi"
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert isinstance(app.screen, ComposeScreen)
        notes = [n.message for n in app._notifications]
        assert any("CHANGED" in n for n in notes), notes


def test_startup_error_is_one_plain_line(tmp_path, capsys):
    from mmtp_tui.__main__ import main

    bad = tmp_path / "bad.toml"
    bad.write_text("theme = [", encoding="utf-8")
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmtp-tui: error:") and "Traceback" not in err


@pytest.mark.parametrize("module", ["mmtp_proto"])
def test_protocol_package_never_imports_textual(module):
    import subprocess
    import sys

    code = (
        "import importlib, pkgutil, sys\n"
        f"import {module}\n"
        f"for m in pkgutil.walk_packages({module}.__path__, '{module}.'):\n"
        "    if m.name.endswith('server_cli'): continue\n"
        "    importlib.import_module(m.name)\n"
        "for m in ('mmtp_tui.config', 'mmtp_tui.mailstore', 'mmtp_tui.contacts',\n"
        "          'mmtp_tui.sync', 'mmtp_tui.local_server', 'mmtp_tui.keymap',\n"
        "          'mmtp_tui.session', 'mmtp_tui.query', 'mmtp_tui.outbox',\n"
        "          'mmtp_tui.headers', 'mmtp_tui.notices', 'mmtp_tui.replying',\n"
        "          'mmtp_tui.attachments'):\n"
        "    importlib.import_module(m)\n"
        "bad = [m for m in sys.modules if m == 'textual' or m.startswith('textual.')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_reader_shows_a_banner_for_a_sender_whose_key_changed(
    server, make_session, tui_settings
):
    from mmtp_proto import pgp

    bob = make_session(server, "bob", BOB)
    settings = tui_settings(server)
    app = MailApp(settings, known_servers=bob.known_servers)
    async with app.run_test(size=SIZE) as pilot:
        main = await wait_for_screen(app, pilot, MainScreen)
        await settle(app, pilot)
        session = main.session
        session.contacts.observe(BOB, bob.key().public)  # pinned
        other = pgp.generate_key(BOB, "Mallory", algorithm="ed25519")
        assert session.contacts.observe(BOB, other.public) == "changed"
        session.store.add_message(
            "alice",
            packet={"sender": BOB, "recipient": ALICE, "meta": {"messageId": "m1"}},
            direction="in",
            folder="Inbox",
            subject="Trust me",
            body="New key, same Bob.",
        )
        main.refresh_view()
        await pilot.pause()
        banner = main.query_one("#key-change-banner")
        assert banner.display
        assert "KEY CHANGED" in str(banner.render())
        assert other.public.fingerprint in str(banner.render())


async def test_compose_tab_order_is_to_cc_bcc_subject_body_then_toggles(
    server, make_session, tui_settings
):
    bob = make_session(server, "bob", BOB)
    app = MailApp(tui_settings(server), known_servers=bob.known_servers)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_screen(app, pilot, MainScreen)
        await pilot.press("c")
        compose = await wait_for_screen(app, pilot, ComposeScreen)
        order = [compose.focused.id]
        for _ in range(7):
            await pilot.press("tab")
            order.append(compose.focused.id)
        assert order == ["to", "cc", "bcc", "subject", "body", "encrypt", "sign", "to"]
        await pilot.press("shift+tab", "shift+tab", "shift+tab", "shift+tab")
        assert compose.focused.id == "subject"
