"""Snapshots of the screens, with fixed data: keys from tests/tui/data, messages with fixed
ids and timestamps put straight into the local mail store, a real server (its ports are
never shown), the HashCash bar driven with a fixed value, and no blinking cursor.

Regenerate with `pytest tests/tui/test_tui_snapshots.py --snapshot-update`, then look at
every changed SVG before committing it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, TextArea

from mmtp_proto import pgp
from mmtp_proto.keystore import Keystore
from mmtp_proto.known_servers import KnownServers
from mmtp_proto.minter import MintStatus
from mmtp_proto.server import Server
from mmtp_tui import config
from mmtp_tui.app import MailApp
from mmtp_tui.mailstore import MailStore
from mmtp_tui.screens.compose import ComposeScreen
from mmtp_tui.screens.keys import KeysScreen
from mmtp_tui.screens.main import MainScreen
from mmtp_tui.session import AccountSession
from mmtp_tui.widgets.send_progress import SendProgress

DATA = Path(__file__).parent / "data"
ALICE = "(alice)%(localhost)"
BOB = "(bob)%(localhost)"
CAROL = "(carol)%(example.com)"
DAVE = "(dave)%(example.com)"
T0 = 1_780_000_000  # 2026-05-28 20:26:40 UTC


def fixed_key(name: str) -> pgp.PrivateKey:
    return pgp.PrivateKey.from_armored((DATA / f"{name}.key.asc").read_text(encoding="utf-8"))


def packet(
    message_id: str,
    sender: str,
    recipient: str,
    timestamp: int,
    *,
    in_reply_to: str | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "messageId": message_id,
        "timestamp": timestamp,
        "receivedAt": timestamp + 2,
    }
    if in_reply_to:
        meta |= {"inReplyTo": in_reply_to, "references": [in_reply_to]}
    return {"sender": sender, "recipient": recipient, "meta": meta}


def fill_store(store: MailStore) -> None:
    bob_fp = fixed_key("bob").public.fingerprint
    alice_fp = fixed_key("alice").public.fingerprint
    store.add_message(
        "alice",
        packet=packet("m-plans", ALICE, BOB, T0),
        direction="out",
        folder="Sent",
        subject="Project plans",
        body="The plan is ready: see the three steps below.",
        read=True,
        encrypted=True,
        signature="verified",
        signer_fingerprint=alice_fp,
    )
    store.add_message(
        "alice",
        packet=packet("m-plans-re", BOB, ALICE, T0 + 3600, in_reply_to="m-plans"),
        direction="in",
        folder="Inbox",
        subject="Re: Project plans",
        body="Looks good to me.\n\nShall we meet on Friday at ten?\n\nBob",
        encrypted=True,
        signature="verified",
        signer_fingerprint=bob_fp,
    )
    store.add_message(
        "alice",
        packet=packet("m-lunch", CAROL, ALICE, T0 + 1800),
        direction="in",
        folder="Inbox",
        subject="Lunch on Friday?",
        body="The usual place?",
    )
    store.add_message(
        "alice",
        packet=packet("m-invoice", DAVE, ALICE, T0 - 3600),
        direction="in",
        folder="Inbox",
        subject="Invoice 2026-05",
        body="Attached.",
        read=True,
        signature="unknown",
    )
    store.add_message(
        "alice",
        packet=packet("m-welcome", BOB, ALICE, T0 - 86400),
        direction="in",
        folder="Inbox",
        subject="Welcome to MMTP",
        body="Encrypted and signed, always.",
        read=True,
        encrypted=True,
        signature="verified",
        signer_fingerprint=bob_fp,
    )


@pytest.fixture
def mail_app(start_server: Callable[..., Server], tmp_path: Path) -> Callable[[], MailApp]:
    """Alice's app: her fixed key registered on a real server, Bob's key pinned, the store
    filled with fixed messages."""
    server = start_server()
    known = KnownServers(tmp_path / "known_servers")
    known.pin(*server.tls_address, server.tls_fingerprint)
    stores: list[MailStore] = []

    def make() -> MailApp:
        home = tmp_path / "alice"
        keystore = Keystore(home / "keystore")
        store = MailStore(home / "mail.sqlite3")
        stores.append(store)
        host, port = server.plain_address
        account = config.Account(
            name="alice",
            address=ALICE,
            display_name="Alice",
            host=host,
            port=port,
            secure_port=server.tls_address[1],
        )
        session = AccountSession(account, store=store, keystore=keystore, known_servers=known)
        session.set_key(fixed_key("alice"))
        if session.registered_fingerprint() is None:
            session.register()
        session.contacts.pin(BOB, fixed_key("bob").public)  # pins are per account
        fill_store(store)
        settings = config.Settings(path=tmp_path / "tui.toml")
        settings.add_account(account)
        return MailApp(settings, store=store, keystore=keystore, known_servers=known)

    yield make
    for store in stores:
        store.close()


async def steady(pilot: Pilot) -> None:
    """Every worker done, no toasts, no blinking cursor: the same picture every run."""
    app = pilot.app
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()
    app.clear_notifications()
    for widget in app.screen.query("Input, TextArea"):
        widget.cursor_blink = False  # type: ignore[attr-defined]
    await pilot.pause()


async def until_screen(pilot: Pilot, kind: type) -> None:
    for _ in range(500):
        if isinstance(pilot.app.screen, kind):
            return
        await pilot.pause(0.02)
    raise AssertionError(f"{kind.__name__} never showed")


async def on_main(pilot: Pilot) -> None:
    await until_screen(pilot, MainScreen)
    await steady(pilot)


async def reading(pilot: Pilot) -> None:
    await on_main(pilot)
    await pilot.press("enter")  # the newest thread: Bob's encrypted, verified reply
    await steady(pilot)


async def hashcash_midway(pilot: Pilot) -> None:
    await on_main(pilot)
    await pilot.press("r")
    await until_screen(pilot, ComposeScreen)
    screen = pilot.app.screen
    # The screen is current before its on_mount has run, and on_mount hides the progress
    # line: showing it earlier lost the race under load. on_mount's last step focuses the
    # body (a reply has its recipients).
    for _ in range(500):
        body = screen.query("#body")
        if screen.is_mounted and body and body.first().has_focus:
            break
        await pilot.pause(0.01)
    await steady(pilot)
    screen.query_one("#body", TextArea).text = "Friday at ten works.\n"
    progress = screen.query_one("#progress", SendProgress)
    progress.display = True
    progress.mint(MintStatus(tries=524_288, bits=20, elapsed=1.5))
    await steady(pilot)


async def keys_pane(pilot: Pilot) -> None:
    await on_main(pilot)
    await pilot.press("K")
    await until_screen(pilot, KeysScreen)
    await steady(pilot)


def first_run_app(monkeypatch) -> MailApp:
    for var in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(var, "alice")
    return MailApp(config.Settings(path=config.default_config_path()))


def test_setup_screen_snapshot(snap_compare, monkeypatch):
    assert snap_compare(first_run_app(monkeypatch), terminal_size=(80, 24))


def test_setup_screen_connecting_to_a_server_snapshot(snap_compare, monkeypatch):
    async def connect(pilot: Pilot) -> None:
        await pilot.press("down")
        for widget in pilot.app.screen.query(Input):
            widget.cursor_blink = False

    assert snap_compare(first_run_app(monkeypatch), terminal_size=(80, 24), run_before=connect)


def test_help_screen_snapshot(snap_compare, monkeypatch):
    assert snap_compare(first_run_app(monkeypatch), press=["f1"], terminal_size=(80, 24))


def test_main_screen_snapshot(snap_compare, mail_app):
    assert snap_compare(mail_app(), terminal_size=(80, 24), run_before=on_main)


def test_reader_encrypted_and_verified_snapshot(snap_compare, mail_app):
    assert snap_compare(mail_app(), terminal_size=(80, 24), run_before=reading)


def test_compose_hashcash_midway_snapshot(snap_compare, mail_app):
    assert snap_compare(mail_app(), terminal_size=(80, 24), run_before=hashcash_midway)


def test_keys_pane_snapshot(snap_compare, mail_app):
    assert snap_compare(mail_app(), terminal_size=(80, 24), run_before=keys_pane)


def test_reader_snapshot_at_200x50(snap_compare, mail_app):
    assert snap_compare(mail_app(), terminal_size=(200, 50), run_before=reading)
