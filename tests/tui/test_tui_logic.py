"""The plain modules, driven against a real server: no Textual here."""

from __future__ import annotations

import time

import pytest

from mmtp_proto.hashcash import MintCancelled
from mmtp_proto.minter import Minter
from mmtp_proto.outgoing import Outgoing
from mmtp_tui import config
from mmtp_tui.mailstore import MailStore
from mmtp_tui.sync import fetch

ALICE = "(alice)%(localhost)"
BOB = "(bob)%(localhost)"


def test_settings_round_trip_through_toml(tmp_path):
    settings = config.Settings(path=tmp_path / "tui.toml", theme="light")
    settings.add_account(
        config.Account(name="a b", address="(A)%(Localhost)", port=1, secure_port=2)
    )
    settings.keymap["main.compose"] = "ctrl+n"
    settings.save()
    loaded = config.load(tmp_path / "tui.toml")
    assert loaded.account.address == "(a)%(localhost)"
    assert loaded.keymap == {"main.compose": "ctrl+n"}
    assert loaded.theme == "light"
    assert (tmp_path / "tui.toml").stat().st_mode & 0o777 == 0o600


def test_minter_in_a_child_process_finds_a_valid_stamp():
    seen: list[int] = []
    stamp = Minter(processes=1, progress_interval=0.05).mint(BOB, 8, "0" * 64, progress=seen.append)
    assert stamp["token"].startswith("1:8:")
    assert seen and seen[-1] >= 1


def test_minter_cancel_in_a_child_process_is_a_cancel():
    started = time.monotonic()
    with pytest.raises(MintCancelled):
        Minter(processes=1).mint(BOB, 40, "0" * 64, cancel=lambda: time.monotonic() > started + 0.2)


def send(session, to, subject, body, **kwargs):
    with session.connected() as client:
        outgoing = Outgoing(to=[to], subject=subject, body=body, **kwargs)
        return session.send(client, outgoing, minter=Minter(processes=1))


def test_send_fetch_reply_thread(server, make_session):
    alice = make_session(server, "alice", ALICE)
    bob = make_session(server, "bob", BOB)
    first = send(alice, BOB, "Hello", "secret body")
    assert first.encrypted and first.signed
    result = fetch(bob)
    assert result.new == 1
    (got,) = bob.store.folder("bob", "Inbox")
    assert got.subject == "Hello" and got.body == "secret body"
    assert got.encrypted and got.signature == "verified" and got.integrity_ok
    with bob.connected() as client:
        assert client.check(BOB) == 0  # deleted once stored
    send(
        bob,
        ALICE,
        "Re: Hello",
        "answer",
        type="REPLY",
        in_reply_to=got.message_id,
        references=[got.message_id],
    )
    fetch(alice)
    thread = alice.store.thread("alice", got.message_id)
    assert [m.subject for m in thread] == ["Hello", "Re: Hello"]
    assert alice.store.search("alice", "answer")[0].subject == "Re: Hello"


def test_changed_contact_key_is_reported_and_not_used(server, make_session, tmp_path):
    alice = make_session(server, "alice", ALICE)
    bob = make_session(server, "bob", BOB)
    alice.fetch_contact(BOB)
    # Bob replaces his key (authenticated with the old one).
    old = bob.key()
    bob.generate_key("ed25519", None)
    with bob.connected(auth=False) as client:
        client.auth(BOB, old)
        client.register_key(BOB, bob.key().public.armored)
    _key, status = alice.fetch_contact(BOB)
    assert status == "changed"
    assert "CHANGED" in alice.contacts.changes()[BOB].text
    with pytest.raises(Exception, match="CHANGED"):
        send(alice, BOB, "x", "y")
    assert alice.contacts.pin_offered(BOB)
    send(alice, BOB, "x", "y")


def test_store_folders_move_delete(tmp_path):
    store = MailStore(tmp_path / "m.sqlite3")
    packet = {"sender": BOB, "recipient": ALICE, "meta": {"messageId": "a" * 32, "timestamp": 5}}
    assert store.add_message(
        "alice", packet=packet, direction="in", folder="Inbox", subject="s", body="b"
    )
    assert not store.add_message(
        "alice", packet=packet, direction="in", folder="Inbox", subject="s", body="b"
    )
    (m,) = store.folder("alice", "Inbox")
    assert store.counts("alice")["Inbox"] == (1, 1)
    store.set_read(m.id)
    store.move(m.id, "Archive")
    assert store.counts("alice")["Archive"] == (1, 0)
    assert store.delete(m.id) == "trash"
    assert store.delete(m.id) == "deleted"
    assert store.get(m.id) is None
    store.close()


def test_local_server_left_by_a_killed_tui_is_reused_then_stopped_on_a_clean_quit(tmp_path):
    import json
    import os

    from mmtp_tui.local_server import LocalServer, _alive

    first = LocalServer(tmp_path / "local", difficulty=8, ports=(0, 0))
    info = first.start()
    try:
        # The mmtp-tui that started it is killed: its pid is gone, the server runs on.
        state = json.loads(first.state_path.read_text())
        state["owner"] = 2**22 + 12345  # no such process
        first.state_path.write_text(json.dumps(state))
        second = LocalServer(tmp_path / "local", difficulty=8, ports=(0, 0))
        again = second.start()
        assert (again.pid, again.secure_port) == (info.pid, info.secure_port)
        assert second.adopted
        assert json.loads(second.state_path.read_text())["owner"] == os.getpid()
        second.stop()
        assert not _alive(info.pid)
        assert not second.state_path.exists()
    finally:
        first.stop()


def test_local_server_of_a_running_tui_is_shared_not_stopped(tmp_path):
    from mmtp_tui.local_server import LocalServer, _alive

    first = LocalServer(tmp_path / "local", difficulty=8, ports=(0, 0))
    info = first.start()
    try:
        second = LocalServer(tmp_path / "local", difficulty=8, ports=(0, 0))
        assert second.start().pid == info.pid and not second.adopted
        second.stop()
        assert _alive(info.pid)
    finally:
        first.stop()
    assert not _alive(info.pid)


def test_a_quoted_reply_names_the_date_in_words_not_seconds() -> None:
    from types import SimpleNamespace

    from mmtp_tui.replying import quote

    message = SimpleNamespace(timestamp=1795983980, sender="(root)%(localhost)", body="a\nb")
    text = quote(message)
    assert "On Sun, 29 Nov 2026 20:26 UTC, (root)%(localhost) wrote:\n> a\n> b" in text
    assert "1795983980" not in text
