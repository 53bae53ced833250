"""Text from senders, servers and keys on screen: never markup, never terminal control (Rich
and Textual let ESC and bidi overrides through to the terminal)."""

from __future__ import annotations

import pytest
from test_tui_app import ALICE, BOB, SIZE, settle, wait_for_screen
from test_tui_bugs import alice_app
from test_tui_compose import compose_screen, notes, start_alice, wait_until

from mmtp_proto.minter import Minter
from mmtp_proto.outgoing import Outgoing
from mmtp_tui.app import MailApp
from mmtp_tui.plain import printable
from mmtp_tui.screens.compose import ComposeScreen
from mmtp_tui.screens.dialogs import ConfirmScreen
from mmtp_tui.screens.main import MainScreen

MARKUP = "[bold red]x[/] [@click=app.quit]q[/] [link=file:///etc/passwd]p[/] [/]"
HOSTILE = MARKUP + " \x1b[31mE\x1b]0;pwned\x07\r\u202eRTL"
UNSAFE = ("\x1b", "\x07", "\u202e", "\r")


def screen_text(app) -> str:
    """Every character the compositor would write to the terminal for the current screen."""
    update = app.screen._compositor.render_update(full=True)
    return "".join(segment.text for strip in update.strips for segment in strip)


def assert_clean(text: str) -> None:
    for char in UNSAFE:
        assert char not in text, f"{char!r} reaches the terminal"


def test_printable_keeps_lines_and_length_and_marks_each_unsafe_character() -> None:
    assert printable("a\x1bb\u202ec\x9bd", newlines=True) == "a\ufffdb\ufffdc\ufffdd"
    assert printable("one\ntwo\tthree", newlines=True) == "one\ntwo\tthree"
    assert printable("one\ntwo") == "one two"
    assert printable(MARKUP) == MARKUP  # markup is escaped where it is shown, not here


async def hostile_mail_fetched(app, pilot, bob) -> MainScreen:
    """Alice's main screen once Bob's message with HOSTILE subject and body is fetched."""
    main = await start_alice(app, pilot)
    bob.fetch_contact(ALICE)
    with bob.connected() as client:
        bob.send(client, Outgoing(to=[ALICE], subject=HOSTILE, body=HOSTILE), minter=Minter())
    await pilot.press("F")
    await settle(app, pilot)
    await wait_until(pilot, lambda: bool(main.shown))
    return main


async def test_a_hostile_subject_and_body_show_as_they_are(server, make_session, tui_settings):
    """ESC, BEL and U+202E in a sender's subject and body reached the terminal from the
    message list and the reader (Rich drops only BEL, BS, VT, FF and CR, and only in Text)."""
    bob = make_session(server, "bob", BOB)
    app = MailApp(tui_settings(server), known_servers=bob.known_servers)
    async with app.run_test(size=SIZE) as pilot:
        await hostile_mail_fetched(app, pilot, bob)
        assert_clean(screen_text(app))  # the message list
        await pilot.press("enter")
        await settle(app, pilot)
        text = screen_text(app)
        assert_clean(text)  # the reader
        assert "[bold red]x[/]" in text and "[@click=app.quit]q[/]" in text
        assert app.is_running and isinstance(app.screen, MainScreen)


async def test_notifications_and_questions_carry_no_terminal_control(server, tui_settings):
    """A server's error message or a sender's file name in a notification or a confirm
    dialog reached the terminal with its escape sequences."""
    app = alice_app(server, tui_settings)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_screen(app, pilot, MainScreen)
        app.notify(HOSTILE, title=HOSTILE, severity="error")
        await pilot.pause()
        assert_clean(screen_text(app))
        assert any(MARKUP in note for note in notes(app))
        answers: list[bool] = []
        app.push_screen(ConfirmScreen(f"Save {HOSTILE}?"), answers.append)
        await wait_for_screen(app, pilot, ConfirmScreen)
        text = screen_text(app)
        assert_clean(text)
        assert "[@click=app.quit]q[/]" in text
        await pilot.press("n")
        await pilot.pause()
        assert answers == [False] and app.is_running


@pytest.mark.parametrize("key", ["R", "f"])
async def test_a_reply_or_forward_of_a_hostile_message_shows_it_safely(
    server, make_session, tui_settings, key
):
    """The `Re:`/`Fwd:` subject (an Input) and the quote (a TextArea) put a sender's ESC and
    U+202E on the terminal, and the reply would have sent them back."""
    bob = make_session(server, "bob", BOB)
    app = MailApp(tui_settings(server), known_servers=bob.known_servers)
    async with app.run_test(size=SIZE) as pilot:
        await hostile_mail_fetched(app, pilot, bob)
        await pilot.press(key)
        compose = await compose_screen(app, pilot)
        for widget in ("#subject", "#body"):
            compose.query_one(widget).focus()
            await pilot.pause()
            text = screen_text(app)
            assert_clean(text)
        assert isinstance(app.screen, ComposeScreen)
        assert "[@click=app.quit]q[/]" in compose.query_one("#subject").value
