"""Regression tests for the bugs of issue 10: each failed on the code before its fix."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from rich.console import Console
from test_tui_app import ALICE, BOB, settle, wait_for_screen
from textual.widgets import DataTable, Footer, Input, Static, TextArea

from mmtp_proto.known_servers import KnownServers
from mmtp_tui import config
from mmtp_tui.app import MailApp
from mmtp_tui.mailstore import MailStore
from mmtp_tui.screens.compose import ComposeScreen
from mmtp_tui.screens.dialogs import PromptScreen
from mmtp_tui.screens.help import HelpScreen, help_table
from mmtp_tui.screens.keys import KeysScreen
from mmtp_tui.screens.main import MainScreen
from mmtp_tui.screens.setup import SetupScreen
from mmtp_tui.session import default_store_path
from mmtp_tui.widgets.folder_list import FolderList
from mmtp_tui.widgets.message_list import MessageList

SIZE = (100, 30)


def alice_app(server, tui_settings) -> MailApp:
    """Alice's app with the server's certificate already pinned (no TOFU question)."""
    known = KnownServers()
    known.pin(*server.tls_address, server.tls_fingerprint)
    return MailApp(tui_settings(server), known_servers=known)


async def test_a_burst_of_folder_keys_leaves_the_app_idle(server, tui_settings):
    """Bug 1: two highlight changes in one burst made folder_chosen and show_counts
    re-highlight each other forever (100% CPU, the view changing by itself)."""
    app = alice_app(server, tui_settings)
    async with app.run_test(size=SIZE) as pilot:
        main = await wait_for_screen(app, pilot, MainScreen)
        await settle(app, pilot)
        refreshes = 0
        original = main.refresh_view

        def counted() -> None:
            nonlocal refreshes
            refreshes += 1
            original()

        main.refresh_view = counted  # type: ignore[method-assign]
        folders = main.query_one(FolderList)
        folders.focus()
        # A burst: three highlights queued before any handler runs (a held ↓ over SSH).
        folders.highlighted = 1
        folders.highlighted = 2
        folders.highlighted = 3
        await pilot.press("down", "up", "down")
        await pilot.pause(0.3)
        refreshes = 0
        await pilot.pause(0.5)
        assert refreshes == 0, f"{refreshes} refreshes while idle"
        # Inbox, Sent, Drafts, Outbox, Archive: the last highlight (index 4) is current.
        assert main.folder == "Archive" == folders.get_option_at_index(folders.highlighted).id


async def test_markup_typed_in_the_keys_pane_does_not_crash(server, tui_settings):
    """Bug 2: `[/b]` in an address typed in the keys pane raised MarkupError."""
    app = alice_app(server, tui_settings)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_screen(app, pilot, MainScreen)
        await settle(app, pilot)
        await pilot.press("K")
        keys = await wait_for_screen(app, pilot, KeysScreen)
        await settle(app, pilot)
        await pilot.press("f")
        await wait_for_screen(app, pilot, PromptScreen)
        await pilot.press(*"[/b]x[red]", "enter")
        await settle(app, pilot)
        await pilot.pause(0.2)
        assert app.is_running and app.screen is keys
        notes = [n.message for n in app._notifications]
        assert any("[/b]" in n for n in notes), notes


async def test_markup_typed_in_setup_does_not_crash(server):
    """Bug 2: `[/x]` typed in setup (address, host) raised MarkupError from the status
    line or the error toast."""
    app = MailApp(config.load())
    async with app.run_test(size=SIZE) as pilot:
        screen = await wait_for_screen(app, pilot, SetupScreen)
        screen.query_one("#address", Input).value = "([/x])%(localhost)"
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
        assert app.is_running and app.screen is screen
        await pilot.press("down")  # connect to a server
        screen.query_one("#address", Input).value = ALICE
        screen.query_one("#host", Input).value = "[/x]"
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        await pilot.pause(0.2)
        assert app.is_running and app.screen is screen
        assert "[/x]" in str(screen.query_one("#setup-status", Static).render()) or any(
            "[/x]" in n.message for n in app._notifications
        )


async def test_ctrl_q_keeps_an_unsent_compose_as_a_draft(server, tui_settings):
    """Bug 4: ctrl+q with a compose open threw the message away."""
    app = alice_app(server, tui_settings)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_screen(app, pilot, MainScreen)
        await settle(app, pilot)
        await pilot.press("c")
        compose = await wait_for_screen(app, pilot, ComposeScreen)
        compose.query_one("#to", Input).value = BOB
        compose.query_one("#subject", Input).value = "Half written"
        compose.query_one("#body", TextArea).text = "Do not lose me."
        await pilot.press("ctrl+q")
        await pilot.pause()
    store = MailStore(default_store_path())
    try:
        (draft,) = store.drafts("alice")
    finally:
        store.close()
    assert (draft.recipient, draft.subject, draft.outgoing.body) == (
        BOB,
        "Half written",
        "Do not lose me.",
    )


def test_without_a_terminal_it_says_so_and_exits():
    """Bug 12: with stdin/stdout not a tty it hung writing escape codes."""
    done = subprocess.run(
        [sys.executable, "-m", "mmtp_tui"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
    )
    assert done.returncode != 0
    assert "terminal" in done.stderr and "ssh -t" in done.stderr


async def test_help_shows_keymap_and_readable_keys(server, tui_settings):
    """Bug 13: the help text lost `[keymap]` (eaten as markup); keys read `question_mark,f1`."""
    app = alice_app(server, tui_settings)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_screen(app, pilot, MainScreen)
        await settle(app, pilot)
        await pilot.press("f1")
        help_screen = await wait_for_screen(app, pilot, HelpScreen)
        await pilot.pause()
        assert "[keymap]" in str(help_screen.query_one("#help-intro", Static).render())
        console = Console(width=100, record=True, file=io.StringIO())
        assert help_screen.query_one("#help-table", Static)
        console.print(help_table(app.settings.keymap))
        shown = console.export_text()
        assert "question_mark" not in shown and "? F1" in shown


async def test_sent_list_is_headed_to(server, tui_settings):
    """Bug 13: the Sent list's address column said "From"."""
    app = alice_app(server, tui_settings)
    async with app.run_test(size=SIZE) as pilot:
        main = await wait_for_screen(app, pilot, MainScreen)
        await settle(app, pilot)
        table = main.query_one(MessageList)
        assert str(table.columns[table.get_column_index("from") and "from"].label) == "From"
        main.query_one(FolderList).highlighted = 1  # Sent
        await pilot.pause()
        assert main.folder == "Sent"
        labels = [str(c.label) for c in main.query_one(MessageList, DataTable).columns.values()]
        assert "To" in labels and "From" not in labels


async def test_palette_lists_each_command_once_and_archive(server, tui_settings):
    """Bug 13: "Accounts" twice and no "Archive" in the command palette."""
    app = alice_app(server, tui_settings)
    async with app.run_test(size=SIZE) as pilot:
        main = await wait_for_screen(app, pilot, MainScreen)
        await settle(app, pilot)
        titles = [c.title for c in app.get_system_commands(main)]
        assert len(titles) == len(set(titles)), titles
        assert "Archive" in titles


async def test_80x24_footer_fits_and_list_shows_more_than_5_rows(server, tui_settings):
    """Bug 13: at 80×24 the footer was cut (`? He`) and the list showed 5 rows."""
    app = alice_app(server, tui_settings)
    async with app.run_test(size=(80, 24)) as pilot:
        main = await wait_for_screen(app, pilot, MainScreen)
        await settle(app, pilot)
        footer = main.query_one(Footer)
        keys = list(footer.query("FooterKey"))
        assert keys and all(k.region.right <= 80 for k in keys), [
            (k.description, k.region.right) for k in keys
        ]
        assert any("Help" in str(k.description) for k in keys)
        table = main.query_one(MessageList)
        rows_visible = table.scrollable_content_region.height - 1  # minus the header row
        assert rows_visible >= 8, rows_visible
        await pilot.press("K")
        keys_screen = await wait_for_screen(app, pilot, KeysScreen)
        await settle(app, pilot)
        keys = list(keys_screen.query_one(Footer).query("FooterKey"))
        assert keys and all(k.region.right <= 80 for k in keys), [
            (k.description, k.region.right) for k in keys
        ]


async def test_after_esc_at_the_passphrase_fetch_offers_to_unlock(server, tui_settings):
    """Bug 8: after Esc at the passphrase prompt nothing offered to unlock again."""
    from mmtp_tui.screens.dialogs import PassphraseScreen

    settings = tui_settings(server)
    setup_app = alice_app(server, tui_settings)
    async with setup_app.run_test(size=SIZE) as pilot:
        main = await wait_for_screen(setup_app, pilot, MainScreen)
        main.session.generate_key("ed25519", "secret")
        main.session.register()
        await settle(setup_app, pilot)
    known = KnownServers()
    app = MailApp(settings, known_servers=known)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_screen(app, pilot, PassphraseScreen)
        await pilot.press("escape")
        main = await wait_for_screen(app, pilot, MainScreen)
        await settle(app, pilot)
        assert main.session.needs_passphrase()
        await pilot.press("F")
        await wait_for_screen(app, pilot, PassphraseScreen)
        await pilot.press(*"secret", "enter")
        await wait_for_screen(app, pilot, MainScreen)
        await settle(app, pilot)
        assert not main.session.needs_passphrase()
        notes = [n.message for n in app._notifications]
        assert not any("Could not get mail" in n for n in notes), notes
        await pilot.press("c")
        await wait_for_screen(app, pilot, ComposeScreen)  # unlocked: no question now


async def test_a_dead_local_server_is_reaped_and_restarted(tmp_path):
    """Bug 7: the app's own server died, left a <defunct> child and every fetch failed."""
    import signal

    from mmtp_tui.local_server import LocalServer

    settings = config.Settings(path=config.default_config_path())
    settings.add_account(config.Account(name="alice", address=ALICE, local_server=True))
    server = LocalServer(tmp_path / "local", difficulty=8, ports=(0, 0))
    app = MailApp(settings, local_server=server)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_screen(app, pilot, MainScreen)
        await settle(app, pilot)
        first = server.info.pid
        os.kill(first, signal.SIGKILL)
        # Done when the restart worker has finished its work: the new server runs, the
        # session points at it, and the user was told (the last step of the worker).
        for _ in range(1000):
            await pilot.pause(0.05)
            told = any("running again" in n.message for n in app._notifications)
            if told and server.info is not None and server.info.pid != first:
                break
        assert server.info.pid != first and server.running()
        assert not os.path.exists(f"/proc/{first}")  # reaped, not <defunct>
        account = app.session.account
        assert (account.port, account.secure_port) == (server.info.port, server.info.secure_port)
        notes = [n.message for n in app._notifications]
        assert any("running again" in n for n in notes), notes


async def test_keys_pane_shows_the_local_server_to_its_host_user(tmp_path):
    """Bug 11: the host user never saw the local server's address and fingerprint."""
    from mmtp_tui.local_server import LocalServer

    settings = config.Settings(path=config.default_config_path())
    settings.add_account(config.Account(name="alice", address=ALICE, local_server=True))
    server = LocalServer(tmp_path / "local", difficulty=8, ports=(0, 0))
    app = MailApp(settings, local_server=server)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_screen(app, pilot, MainScreen)
        await settle(app, pilot)
        await pilot.press("K")
        keys = await wait_for_screen(app, pilot, KeysScreen)
        await settle(app, pilot)
        shown = str(keys.query_one("#server-info", Static).render())
        assert server.info.fingerprint in shown and str(server.info.secure_port) in shown


async def test_saving_attachments_is_safe(server, tui_settings, tmp_path):
    """Issue 11 item 11: saving overwrote files, followed links, took `.bashrc` and bidi
    tricks as they came."""
    from mmtp_proto.packet import make_attachment
    from mmtp_tui.screens.dialogs import ConfirmScreen

    known = KnownServers()
    known.pin(*server.tls_address, server.tls_fingerprint)
    store = MailStore(default_store_path())
    store.add_message(
        "alice",
        packet={"sender": BOB, "recipient": ALICE, "meta": {"messageId": "m1", "timestamp": 1}},
        direction="in",
        folder="Inbox",
        subject="files",
        body="see attached",
        attachments=[
            make_attachment("../report.txt", b"new report", "text/plain"),
            make_attachment(".bashrc", b"rm -rf ~", "text/plain"),
            make_attachment("photo\u202egpj.exe", b"MZ", "application/octet-stream"),
        ],
    )
    target = tmp_path / "downloads"
    target.mkdir()
    (target / "report.txt").write_bytes(b"mine")
    app = MailApp(tui_settings(server), known_servers=known, store=store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_screen(app, pilot, MainScreen)
        await settle(app, pilot)
        await pilot.press("s")
        prompt = await wait_for_screen(app, pilot, PromptScreen)
        prompt.query_one(Input).value = str(target)
        await pilot.press("enter")
        confirm = await wait_for_screen(app, pilot, ConfirmScreen)
        assert ".bashrc" in confirm.question
        await pilot.press("n")
        await pilot.pause()
    assert sorted(p.name for p in target.iterdir()) == [
        "_bashrc",
        "photogpj.exe",
        "report (1).txt",
        "report.txt",
    ]
    assert (target / "report.txt").read_bytes() == b"mine"
    assert not (tmp_path / "report.txt").exists()


async def test_a_crash_keeps_an_unsent_compose_as_a_draft(server, tui_settings):
    """Bug 2's second half: a crash must never lose a compose."""
    app = alice_app(server, tui_settings)
    crashed = False
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for_screen(app, pilot, MainScreen)
            await settle(app, pilot)
            await pilot.press("c")
            compose = await wait_for_screen(app, pilot, ComposeScreen)
            compose.query_one("#body", TextArea).text = "Survive the crash."

            def boom() -> None:
                raise RuntimeError("a bug somewhere")

            app.call_later(boom)
            await pilot.pause(0.2)
    except RuntimeError:
        crashed = True
    assert crashed
    store = MailStore(default_store_path())
    try:
        (draft,) = store.drafts("alice")
    finally:
        store.close()
    assert draft.outgoing.body == "Survive the crash."
