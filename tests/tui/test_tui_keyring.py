"""Bug 3 of issue 10: a new key never destroys the old one; replacing the registered key is
one guided step; old mail stays readable. Bug 10: changing the passphrase needs the old."""

from __future__ import annotations

import pytest
from test_tui_app import settle, wait_for_screen
from test_tui_bugs import alice_app
from test_tui_logic import send
from textual.widgets import Input

from mmtp_proto.errors import LocalError
from mmtp_tui.keyring import KeyRing, write_new
from mmtp_tui.screens.dialogs import ChoiceScreen, ConfirmScreen, NewPassphraseScreen
from mmtp_tui.screens.keys import KeysScreen
from mmtp_tui.screens.main import MainScreen
from mmtp_tui.sync import fetch

ALICE = "(alice)%(localhost)"
BOB = "(bob)%(localhost)"


def test_write_new_never_replaces_a_file(tmp_path):
    path = tmp_path / "k.asc"
    assert write_new(path, "one")
    assert not write_new(path, "two")
    assert path.read_text() == "one" and path.stat().st_mode & 0o777 == 0o600
    link = tmp_path / "link.asc"
    link.symlink_to(tmp_path / "elsewhere")
    assert not write_new(link, "x")  # a dangling link is not followed
    assert not (tmp_path / "elsewhere").exists()


def test_a_new_key_keeps_the_old_one_and_old_mail_stays_readable(server, make_session):
    alice = make_session(server, "alice", ALICE)
    bob = make_session(server, "bob", BOB)
    first = alice.key()
    send(bob, ALICE, "to the old key", "still readable")
    alice.generate_key("ed25519", None)
    assert alice.key().public.fingerprint != first.public.fingerprint
    ring = KeyRing(alice.keystore, ALICE)
    assert len(ring.files()) == 2
    assert [k.public.fingerprint for k in alice.old_keys()] == [first.public.fingerprint]
    # The server still has the old key: AUTH with the new one fails, the guided step works.
    new_fp = alice.replace_registered_key(first)
    assert new_fp == alice.key().public.fingerprint == alice.registered_fingerprint()
    fetch(alice)
    (got,) = alice.store.folder("alice", "Inbox")
    assert got.decrypted and got.body == "still readable"


def test_old_keys_come_back_after_a_restart(server, make_session):
    alice = make_session(server, "alice", ALICE)
    first = alice.key().public.fingerprint
    alice.generate_key("ed25519", None)
    alice._key, alice._old_keys = None, []  # a new session over the same keystore
    alice.unlock(None)
    assert [k.public.fingerprint for k in alice.old_keys()] == [first]


def test_change_passphrase_needs_the_old_one(server, make_session):
    alice = make_session(server, "alice", ALICE)
    alice.change_passphrase(None, "first secret")
    with pytest.raises(LocalError):
        alice.change_passphrase("wrong", "second")
    alice.change_passphrase("first secret", "second")
    alice._key = None
    with pytest.raises(LocalError):
        alice.unlock("first secret")
    alice.unlock("second")


async def test_new_key_in_the_keys_pane_replaces_the_registered_key(server, tui_settings):
    app = alice_app(server, tui_settings)
    async with app.run_test(size=(100, 30)) as pilot:
        main = await wait_for_screen(app, pilot, MainScreen)
        session = main.session
        session.generate_key("ed25519", None)
        session.register()
        old = session.key().public.fingerprint
        await settle(app, pilot)
        await pilot.press("K")
        keys = await wait_for_screen(app, pilot, KeysScreen)
        await settle(app, pilot)
        assert keys.registered == old
        await pilot.press("g")
        await wait_for_screen(app, pilot, ChoiceScreen)
        await pilot.press("down", "enter")  # Ed25519
        await wait_for_screen(app, pilot, NewPassphraseScreen)
        await pilot.press("enter", "enter")  # no passphrase, twice
        confirm = await wait_for_screen(app, pilot, ConfirmScreen)
        assert "Replace" in confirm.yes
        await pilot.press("y")
        await settle(app, pilot)
        new = session.key().public.fingerprint
        assert new != old
        assert keys.registered == new == session.registered_fingerprint()
        assert old in {k.public.fingerprint for k in session.old_keys()}


async def test_passphrase_change_asks_old_and_confirmation(server, tui_settings):
    app = alice_app(server, tui_settings)
    async with app.run_test(size=(100, 30)) as pilot:
        main = await wait_for_screen(app, pilot, MainScreen)
        session = main.session
        session.generate_key("ed25519", "old secret")
        await settle(app, pilot)
        await pilot.press("K")
        await wait_for_screen(app, pilot, KeysScreen)
        await settle(app, pilot)
        await pilot.press("p")
        await pilot.pause()
        await pilot.press(*"old secret", "enter")
        dialog = await wait_for_screen(app, pilot, NewPassphraseScreen)
        await pilot.press(*"new", "enter", *"nwe", "enter")
        await pilot.pause()
        assert app.screen is dialog  # mismatch: asked again
        assert dialog.query_one("#confirm-passphrase", Input).value == ""
        await pilot.press(*"new", "enter")
        await pilot.pause()
        assert isinstance(app.screen, KeysScreen)
        session._key = None
        session.unlock("new")
