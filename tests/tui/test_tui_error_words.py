"""Errors reach the user as what went wrong and what to do: never a traceback, never silence."""

from __future__ import annotations

import pytest
from test_tui_app import SIZE, settle, wait_for_screen
from test_tui_bugs import alice_app
from test_tui_compose import compose_screen, notes, start_alice, wait_until

from mmtp_tui.app import MailApp
from mmtp_tui.screens.dialogs import ChoiceScreen, NewPassphraseScreen
from mmtp_tui.widgets.send_progress import SendProgress

# A stamp takes a second or more here: Esc lands while the second one is being minted.
DIFFICULTY = 22


@pytest.mark.parametrize(
    ("content", "why"),
    [(b"\xff\xfe not text", "not a text file"), (b"not a key at all", "not a usable key")],
)
async def test_an_unreadable_key_file_is_named_with_what_to_do(server, tui_settings, content, why):
    """A damaged key file crashed the app with a traceback (UnicodeDecodeError, or the
    LocalError of the passphrase check on the UI thread) at F, sending or the Keys pane."""
    app = alice_app(server, tui_settings)
    async with app.run_test(size=SIZE) as pilot:
        main = await start_alice(app, pilot)
        await settle(app, pilot)
        path = main.session.keystore.private_path(main.session.address)
        main.session._key = None
        path.write_bytes(content)
        await pilot.press("F")
        await settle(app, pilot)
        assert app.is_running
        said = [note for note in notes(app) if str(path) in note]
        assert said and why in said[-1] and "K, then g" in said[-1], notes(app)
        await pilot.press("K")  # the Keys pane opens on it too
        await settle(app, pilot)
        assert app.is_running and type(app.screen).__name__ == "KeysScreen"
        await pilot.press("p")  # changing the passphrase crashed here too
        await settle(app, pilot)
        assert app.is_running and str(path) in notes(app)[-1]
        await pilot.press("g")  # and a new key can be made (it failed on a non-UTF-8 file)
        await wait_for_screen(app, pilot, ChoiceScreen)
        await pilot.press("down", "enter")
        await wait_for_screen(app, pilot, NewPassphraseScreen)
        await pilot.press("enter", "enter")
        await settle(app, pilot)
        await wait_until(pilot, lambda: main.session.key_info() is not None)
        assert main.session.key().public.fingerprint
        kept = list(main.session.ring.directory.iterdir())
        assert any(
            p.read_bytes().startswith(content[2:]) or content[2:] in p.read_bytes() for p in kept
        ), kept


async def test_a_server_that_went_away_is_said_in_words(server, tui_settings):
    app = alice_app(server, tui_settings)
    async with app.run_test(size=SIZE) as pilot:
        await start_alice(app, pilot)
        await settle(app, pilot)
        server.stop()
        await pilot.press("F")
        await settle(app, pilot)
        said = notes(app)[-1]
        assert "cannot connect" in said and "is the server running" in said, said
        assert "still works offline" in said and "?." not in said, said


def _boom() -> None:
    raise KeyError("no such field")


async def test_an_unforeseen_worker_error_is_said_and_undone(server, tui_settings):
    """Workers run with exit_on_error=False: an exception their handler did not list vanished,
    leaving "getting mail…" or the sending bar on screen with no word to the user."""
    app = alice_app(server, tui_settings)
    async with app.run_test(size=SIZE) as pilot:
        main = await start_alice(app, pilot)
        await settle(app, pilot)
        main.sub_title = "getting mail…"
        main.run_worker(_boom, thread=True, exit_on_error=False, group="fetch")
        await settle(app, pilot)
        said = notes(app)[-1]
        assert "while getting mail" in said and "no such field" in said, said
        assert "Try again" in said and main.sub_title != "getting mail…"
        await pilot.press("c")
        compose = await compose_screen(app, pilot)
        progress = compose.query_one(SendProgress)
        compose.sending, progress.display = True, True
        compose.run_worker(_boom, thread=True, exit_on_error=False, group="send")
        await settle(app, pilot)
        said = notes(app)[-1]
        assert said.startswith("Not sent: ") and "while sending" in said, said
        assert not compose.sending and not progress.display
        assert app.is_running and app.screen is compose


@pytest.mark.parametrize(
    ("content", "why"), [(b"\xff\xfe\x00binary", "not text"), (b"hello\n", "not a usable key")]
)
async def test_setup_importing_a_file_that_is_no_key_says_which_and_what_to_choose(
    server, tmp_path, content, why
):
    """Importing a binary file said "unexpected problem: 'utf-8' codec can't decode byte
    0xff…"; a text file that is no key said why without naming the file."""
    from textual.widgets import Input, Select

    from mmtp_tui import config
    from mmtp_tui.app import MailApp
    from mmtp_tui.screens.dialogs import ConfirmScreen
    from mmtp_tui.screens.setup import SetupScreen

    bad = tmp_path / "my-key.asc"
    bad.write_bytes(content)
    host, port = server.plain_address
    _, secure = server.tls_address
    app = MailApp(config.load())
    async with app.run_test(size=SIZE) as pilot:
        screen = await wait_for_screen(app, pilot, SetupScreen)
        await pilot.press("down")  # connect to a server
        for wid, value in (
            ("#address", "(alice)%(localhost)"),
            ("#host", host),
            ("#port", str(port)),
            ("#secure-port", str(secure)),
            ("#import-path", str(bad)),
        ):
            screen.query_one(wid, Input).value = value
        screen.query_one("#algorithm", Select).value = "ed25519"
        await pilot.press("ctrl+s")
        await wait_for_screen(app, pilot, ConfirmScreen)
        await pilot.press("y")
        await settle(app, pilot)
        await wait_until(pilot, lambda: any(n.title == "Setup failed" for n in app._notifications))
        said = notes(app)[-1]
        assert str(bad) in said and why in said and "export-secret-keys" in said, said
        assert "codec" not in said and app.screen is screen


async def test_saving_where_a_file_stands_names_the_folder(server, tui_settings, tmp_path):
    """ "Could not save: File exists" named neither the folder nor what to do."""
    from test_tui_features import app_with, open_main, put

    from mmtp_proto.packet import make_attachment
    from mmtp_tui.mailstore import MailStore
    from mmtp_tui.screens.dialogs import PromptScreen
    from mmtp_tui.session import default_store_path

    store = MailStore(default_store_path())
    put(store, "files", attachments=[make_attachment("a.txt", b"hello", "text/plain")])
    target = tmp_path / "not-a-folder"
    target.write_text("a file", encoding="utf-8")
    app = app_with(server, tui_settings, store)
    async with app.run_test(size=SIZE) as pilot:
        await open_main(app, pilot)
        await pilot.press("s")
        prompt = await wait_for_screen(app, pilot, PromptScreen)
        prompt.query_one("Input").value = str(target)
        await pilot.press("enter")
        await settle(app, pilot)
        said = notes(app)[-1]
        assert f"Could not save in {target}" in said and "another folder" in said, said


async def test_cancelling_after_some_recipients_says_who_has_it(
    start_server, make_session, tui_settings
):
    """Esc at the second stamp said "Sending cancelled; the message is still here." with
    every recipient still in To: sending again sent the first one a second copy."""
    from textual.widgets import Input, TextArea

    from mmtp_tui.screens.compose import ComposeScreen

    bob_address, carol_address = "(bob)%(localhost)", "(carol)%(localhost)"
    server = start_server(difficulty=DIFFICULTY)
    bob = make_session(server, "bob", bob_address)
    make_session(server, "carol", carol_address)
    app = MailApp(tui_settings(server), known_servers=bob.known_servers)
    async with app.run_test(size=SIZE) as pilot:
        await start_alice(app, pilot)
        await pilot.press("c")
        compose = await compose_screen(app, pilot)
        compose.query_one("#to", Input).value = f"{bob_address}, {carol_address}"
        compose.query_one("#subject", Input).value = "Two"
        compose.query_one("#body", TextArea).text = "Hello both."
        await pilot.press("ctrl+s")
        stage = compose.query_one("#send-stage")
        await wait_until(pilot, lambda: "stamp 2 of 2" in str(stage.render()), tries=3000)
        await pilot.press("escape")
        await settle(app, pilot)
        said = notes(app)[-1]
        assert f"went to {bob_address}" in said and "still here for the others" in said, said
        assert compose.query_one("#to", Input).value == carol_address
        assert isinstance(app.screen, ComposeScreen) and not compose.sending
