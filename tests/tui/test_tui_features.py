"""Pilot tests for issue 10's "what aerc / NeoMutt / himalaya users reach for" (items 1-9),
against a real server on loopback with real keys."""

from __future__ import annotations

import sys

from test_tui_app import ALICE, BOB, SIZE, settle, wait_for_screen
from test_tui_compose import compose_screen, notes, start_alice, wait_until
from textual.widgets import Input, TextArea

from mmtp_proto.known_servers import KnownServers
from mmtp_proto.packet import make_attachment
from mmtp_tui import config, headers
from mmtp_tui.app import MailApp
from mmtp_tui.mailstore import ALL_INBOXES, MailStore
from mmtp_tui.screens.compose import ComposeScreen
from mmtp_tui.screens.dialogs import ChoiceScreen, ConfirmScreen, PromptScreen
from mmtp_tui.screens.help import help_table
from mmtp_tui.screens.keys import KeysScreen
from mmtp_tui.screens.main import MainScreen
from mmtp_tui.session import default_store_path
from mmtp_tui.widgets.message_list import MessageList
from mmtp_tui.widgets.reader import Reader

CAROL = "(carol)%(localhost)"
T0 = 1_780_000_000


def put(
    store: MailStore,
    message_id: str,
    *,
    subject: str = "",
    sender: str = BOB,
    timestamp: int = T0,
    folder: str = "Inbox",
    account: str = "alice",
    reply_to: str | None = None,
    read: bool = False,
    body: str = "",
    **extra,
) -> None:
    meta = {"messageId": message_id, "timestamp": timestamp}
    if reply_to:
        meta |= {"inReplyTo": reply_to, "references": [reply_to]}
    store.add_message(
        account,
        packet={"sender": sender, "recipient": ALICE, "meta": meta, **extra.pop("packet", {})},
        direction="in",
        folder=folder,
        subject=subject or message_id,
        body=body,
        read=read,
        **extra,
    )


def app_with(server, tui_settings, store: MailStore, **settings_changes) -> MailApp:
    known = KnownServers()
    known.pin(*server.tls_address, server.tls_fingerprint)
    settings = tui_settings(server)
    for key, value in settings_changes.items():
        setattr(settings, key, value)
    return MailApp(settings, known_servers=known, store=store)


def row_subjects(main: MainScreen) -> list[str]:
    return [m.subject for m in main.shown]


def cursor_subject(main: MainScreen) -> str:
    message = main.selected()
    assert message is not None
    return message.subject


async def open_main(app, pilot) -> MainScreen:
    main = await wait_for_screen(app, pilot, MainScreen)
    await settle(app, pilot)
    main.query_one(MessageList).focus()
    await pilot.pause()
    return main


# ---------------------------------------------------------------- 1. vi-style movement


async def test_vi_movement_keys(server, tui_settings):
    store = MailStore(default_store_path())
    # Two threads: "t1" (newest, shown first) with a reply, then "a" and "b" alone.
    put(store, "b", timestamp=T0)
    put(store, "a", timestamp=T0 + 10)
    put(store, "t1", timestamp=T0 + 20)
    put(store, "t1-reply", timestamp=T0 + 30, reply_to="t1", body="line\n" * 200)
    app = app_with(server, tui_settings, store)
    async with app.run_test(size=SIZE) as pilot:
        main = await open_main(app, pilot)
        assert row_subjects(main) == ["t1", "t1-reply", "a", "b"]
        await pilot.press("j")
        assert cursor_subject(main) == "t1-reply"
        await pilot.press("k")
        assert cursor_subject(main) == "t1"
        await pilot.press("G")
        assert cursor_subject(main) == "b"
        await pilot.press("g")
        assert cursor_subject(main) == "b"  # one g does nothing yet
        await pilot.press("g")
        assert cursor_subject(main) == "t1"
        await pilot.press("right_square_bracket")
        assert cursor_subject(main) == "a"  # the next thread
        await pilot.press("left_square_bracket")
        assert cursor_subject(main) == "t1"
        await pilot.press("n", "n")
        assert cursor_subject(main) == "a"
        await pilot.press("p")
        assert cursor_subject(main) == "t1-reply"
        # space pages the long message in the reader; b goes back up.
        reader = main.query_one(Reader)
        await pilot.press("space")
        await pilot.pause()
        assert reader.scroll_y > 0 and cursor_subject(main) == "t1-reply"
        await pilot.press("b")
        await pilot.pause()
        assert reader.scroll_y == 0
        # In the reader, j scrolls it instead of moving the list.
        await pilot.press("3", "j")
        await pilot.pause()
        assert reader.scroll_y > 0 and cursor_subject(main) == "t1-reply"
        # k no longer opens the keys pane: K does.
        await pilot.press("2", "k")
        assert isinstance(app.screen, MainScreen)
        await pilot.press("K")
        await wait_for_screen(app, pilot, KeysScreen)


async def test_every_new_action_is_in_help_and_palette(server, tui_settings):
    text = str(help_table({}).columns[1]._cells)
    for words in ("Next message", "Next thread", "First message (g g)", "Flag/star", "Undo"):
        assert words in text
    store = MailStore(default_store_path())
    app = app_with(server, tui_settings, store)
    async with app.run_test(size=SIZE) as pilot:
        main = await open_main(app, pilot)
        titles = {c.title for c in app.get_system_commands(main)}
        for words in (
            "Tag (select)",
            "Undo delete/move",
            "Sort (date/sender/subject)",
            "New folder",
            "Reply all",
            "Open attachment",
            "All inboxes",
        ):
            assert words in titles


# ---------------------------------------------------------------- 2. Outbox


async def test_a_message_sent_offline_waits_in_the_outbox_and_goes_out_later(
    server, make_session, tui_settings
):
    bob = make_session(server, "bob", BOB)
    app = MailApp(tui_settings(server), known_servers=bob.known_servers)
    async with app.run_test(size=SIZE) as pilot:
        main = await start_alice(app, pilot)
        main.session.fetch_contact(BOB)  # pinned earlier: sealing works offline
        account = main.session.account
        live = account.port, account.secure_port
        account.port = account.secure_port = 1  # the server is down
        await pilot.press("c")
        compose = await compose_screen(app, pilot)
        compose.query_one("#to", Input).value = BOB
        compose.query_one("#subject", Input).value = "while offline"
        compose.query_one("#body", TextArea).load_text("queued")
        await pilot.press("ctrl+s")
        await wait_for_screen(app, pilot, MainScreen)
        await settle(app, pilot)
        assert any("Outbox" in n for n in notes(app))
        (queued,) = main.store.outbox("alice")
        assert queued.packet is not None and queued.packet["meta"]["hashcashToken"]
        main.folder = "Outbox"
        main.refresh_view()
        await pilot.pause()
        table = main.query_one(MessageList)
        assert table.row_count == 1 and table.selected_queued_id() == queued.id
        assert "In the Outbox" in str(main.query_one("#reader-text").render())
        # The server is back: the periodic check sends it.
        account.port, account.secure_port = live
        main.check_new()
        await settle(app, pilot)
        await wait_until(pilot, lambda: not main.store.outbox("alice"))
        await settle(app, pilot)
        assert [m.subject for m in main.store.folder("alice", "Sent")] == ["while offline"]
        assert table.row_count == 0
    from mmtp_tui.sync import fetch

    assert fetch(bob).new == 1


# ---------------------------------------------------------------- 3. flags, tags, undo


async def test_flag_tag_delete_undo_and_mark_all_read(server, tui_settings):
    store = MailStore(default_store_path())
    for i, name in enumerate(("one", "two", "three")):
        put(store, name, timestamp=T0 - i)
    app = app_with(server, tui_settings, store)
    async with app.run_test(size=SIZE) as pilot:
        main = await open_main(app, pilot)
        assert row_subjects(main) == ["one", "two", "three"]
        await pilot.press("asterisk")
        assert store.find("alice", "one").flagged
        await pilot.press("t", "t")  # tags "one" and "two" (t moves down)
        assert len(main.tagged) == 2
        await pilot.press("d")
        assert row_subjects(main) == ["three"]
        assert {m.subject for m in store.folder("alice", "Trash")} == {"one", "two"}
        await pilot.press("U")
        assert row_subjects(main) == ["one", "two", "three"]
        await pilot.press("M")
        assert store.counts("alice")["Inbox"] == (3, 0)
        await pilot.press("U")  # nothing left to undo: says so
        assert any("Nothing to undo" in n for n in notes(app))


# ---------------------------------------------------------------- 4. sort, filter, collapse


async def test_search_operators_sorting_and_collapsed_threads(server, tui_settings):
    store = MailStore(default_store_path())
    put(store, "x1", subject="Zebra", sender=CAROL, timestamp=T0)
    put(store, "x2", subject="Apple", sender=BOB, timestamp=T0 + 5, read=True)
    put(store, "x3", subject="Re: Zebra", sender=BOB, timestamp=T0 + 9, reply_to="x1")
    app = app_with(server, tui_settings, store)
    async with app.run_test(size=SIZE) as pilot:
        main = await open_main(app, pilot)
        await pilot.press("o")  # by sender
        assert main.sort == "sender" and row_subjects(main)[-1] == "Zebra"
        await pilot.press("o")  # by subject
        assert row_subjects(main) == ["Apple", "Re: Zebra", "Zebra"]  # same: newest first
        await pilot.press("o", "z")  # back to date, threads collapsed
        assert row_subjects(main) == ["Zebra", "Apple"]
        assert "(+1)" in str(main.query_one(MessageList).get_row_at(0)[2])
        await pilot.press("z", "slash")
        prompt = await wait_for_screen(app, pilot, PromptScreen)
        prompt.query_one(Input).value = "from:bob is:unread"
        await pilot.press("enter")
        await pilot.pause()
        assert row_subjects(main) == ["Re: Zebra"]
        await pilot.press("slash")
        prompt = await wait_for_screen(app, pilot, PromptScreen)
        prompt.query_one(Input).value = "before:yesterday"
        await pilot.press("enter")
        await pilot.pause()
        assert any("YYYY-MM-DD" in n for n in notes(app))
        assert isinstance(app.screen, MainScreen)


# ---------------------------------------------------------------- 5. attachments


async def test_open_an_attachment_with_the_configured_command(
    server, tui_settings, tmp_path, monkeypatch
):
    monkeypatch.setenv("MAILCAPS", str(tmp_path / "no-mailcap"))  # none: the configured command
    store = MailStore(default_store_path())
    put(
        store,
        "files",
        attachments=[make_attachment("../notes [/b].txt", b"hello", "text/plain")],
    )
    copy = tmp_path / "opened"
    script = tmp_path / "open.py"
    script.write_text(
        "import shutil, sys\nshutil.copy(sys.argv[-1], sys.argv[1])\n", encoding="utf-8"
    )
    app = app_with(server, tui_settings, store, open_command=f"{sys.executable} {script} {copy}")
    async with app.run_test(size=SIZE) as pilot:
        await open_main(app, pilot)
        await pilot.press("v")
        await settle(app, pilot)
        await wait_until(pilot, copy.exists)
    assert copy.read_bytes() == b"hello"


async def test_compose_removes_an_attachment_and_completes_paths(server, tui_settings, tmp_path):
    (tmp_path / "report-final.pdf").write_bytes(b"%PDF")
    store = MailStore(default_store_path())
    app = app_with(server, tui_settings, store)
    async with app.run_test(size=SIZE) as pilot:
        await open_main(app, pilot)
        await pilot.press("c")
        compose = await compose_screen(app, pilot)
        await pilot.press("ctrl+o")
        prompt = await wait_for_screen(app, pilot, PromptScreen)
        field = prompt.query_one(Input)
        field.focus()
        await pilot.press(*f"{tmp_path}/rep")
        await wait_until(pilot, lambda: field._suggestion.endswith("report-final.pdf"))
        await pilot.press("right", "enter")
        await wait_for_screen(app, pilot, ComposeScreen)
        assert [a["filename"] for a in compose.outgoing.attachments] == ["report-final.pdf"]
        await pilot.press("ctrl+x")
        await pilot.pause()
        assert compose.outgoing.attachments == []


# ---------------------------------------------------------------- 6. notifications


async def test_new_mail_rings_notifies_the_desktop_and_runs_the_hook(
    server, make_session, tui_settings, tmp_path
):
    bob = make_session(server, "bob", BOB)
    out = tmp_path / "hook-out"
    script = tmp_path / "hook.py"
    script.write_text(
        "import os, sys\nopen(sys.argv[1], 'w').write(os.environ['MMTP_NEW_MAIL'])\n",
        encoding="utf-8",
    )
    settings = tui_settings(server)
    settings.new_mail_hook = f"{sys.executable} {script} {out}"
    settings.desktop_notify = "osc777"
    app = MailApp(settings, known_servers=bob.known_servers)
    async with app.run_test(size=SIZE) as pilot:
        main = await start_alice(app, pilot)
        bells: list[bool] = []
        app.bell = lambda: bells.append(True)  # type: ignore[method-assign]
        from mmtp_proto.minter import Minter
        from mmtp_proto.outgoing import Outgoing

        bob.fetch_contact(ALICE)
        with bob.connected() as client:
            bob.send(client, Outgoing(to=[ALICE], subject="ping [/b]"), minter=Minter())
        await pilot.press("F")
        await settle(app, pilot)
        await wait_until(pilot, out.exists)
        assert out.read_text(encoding="utf-8") == "1"
        assert bells == [True]
        assert app.terminal_notices == ["\x1b]777;notify;mmtp;1 new message\x07"]
        assert main.shown[0].subject == "ping [/b]"


# ---------------------------------------------------------------- 7. compose extras


async def test_signature_headers_from_the_editor_and_reply_all(server, tui_settings, tmp_path):
    signature = tmp_path / "signature"
    signature.write_text("Alice A.\n", encoding="utf-8")
    store = MailStore(default_store_path())
    put(store, "hello", packet={"meta": {"messageId": "hello", "timestamp": T0, "cc": [CAROL]}})
    app = app_with(server, tui_settings, store, signature_file=str(signature))
    async with app.run_test(size=SIZE) as pilot:
        await open_main(app, pilot)
        await pilot.press("e")  # reply all
        compose = await compose_screen(app, pilot)
        assert compose.query_one("#to", Input).value == f"{BOB}, {CAROL}"
        assert compose.outgoing.to == [BOB, CAROL]
        assert compose.query_one("#body", TextArea).text.endswith("-- \nAlice A.\n")
        compose.apply_edited(headers.parse(f"To: {BOB}\nCc: {CAROL}\nSubject: New\n\nHi\n"))
        await pilot.pause()
        assert compose.query_one("#subject", Input).value == "New"
        assert compose._read_form().to == [BOB] and compose.outgoing.cc == [CAROL]
        assert compose.query_one("#body", TextArea).text == "Hi\n"
        await pilot.press("escape")


# ---------------------------------------------------------------- 8. user folders


async def test_user_folders_create_move_rename_delete(server, tui_settings):
    store = MailStore(default_store_path())
    put(store, "keep me")
    app = app_with(server, tui_settings, store)
    async with app.run_test(size=SIZE) as pilot:
        main = await open_main(app, pilot)
        await pilot.press("m")
        await wait_for_screen(app, pilot, ChoiceScreen)
        app.screen.dismiss("+")  # "New folder…"
        prompt = await wait_for_screen(app, pilot, PromptScreen)
        prompt.query_one(Input).value = "Projects"
        await pilot.press("enter")
        await pilot.pause()
        assert store.find("alice", "keep me").folder == "Projects"
        assert "Projects" in main.folder_names()
        main.folder = "Projects"
        main.refresh_view()
        await pilot.press("f2")
        prompt = await wait_for_screen(app, pilot, PromptScreen)
        prompt.query_one(Input).value = "Work"
        await pilot.press("enter")
        await pilot.pause()
        assert main.folder == "Work" and store.find("alice", "keep me").folder == "Work"
        await pilot.press("X")
        await wait_for_screen(app, pilot, ConfirmScreen)
        await pilot.press("y")
        await pilot.pause()
        assert main.folder == "Inbox" and store.find("alice", "keep me").folder == "Trash"
        assert "Work" not in main.folder_names()
        await pilot.press("N")
        prompt = await wait_for_screen(app, pilot, PromptScreen)
        prompt.query_one(Input).value = "Trash"
        await pilot.press("enter")
        await pilot.pause()
        assert any("built-in" in n for n in notes(app))


# ---------------------------------------------------------------- 9. accounts


async def test_passphrase_is_cached_per_account_until_its_timeout(server, tui_settings):
    store = MailStore(default_store_path())
    app = app_with(server, tui_settings, store, passphrase_minutes=5)
    async with app.run_test(size=SIZE) as pilot:
        main = await open_main(app, pilot)
        session = main.session
        session.generate_key("ed25519", "secret")
        assert app.make_session(session.account) is session  # the same cache, not a new ask
        assert not session.needs_passphrase()
        assert app.expire_keys() == []  # used just now
        assert app.expire_keys(now=session.last_used + 5 * 60 + 1) == ["alice"]
        assert session.needs_passphrase()
        session.unlock("secret")
        assert not session.needs_passphrase()


async def test_combined_inbox_lists_every_account(server, tui_settings):
    store = MailStore(default_store_path())
    put(store, "for alice")
    put(store, "for work", account="work", timestamp=T0 + 1)
    known = KnownServers()
    known.pin(*server.tls_address, server.tls_fingerprint)
    settings = tui_settings(server)
    work = config.Account(**{**vars(settings.account), "name": "work"})
    settings.add_account(work, activate=False)
    app = MailApp(settings, known_servers=known, store=store)
    async with app.run_test(size=SIZE) as pilot:
        main = await open_main(app, pilot)
        assert row_subjects(main) == ["for alice"]
        await pilot.press("I")
        assert main.folder == ALL_INBOXES
        assert row_subjects(main) == ["for work", "for alice"]
        await pilot.press("g", "g", "r")  # another account's message: where to reply from
        assert any("switch to it" in n for n in notes(app)), notes(app)
