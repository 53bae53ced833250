"""Issue 11, attack 2 (client half): no single stored message may stop a fetch.

Hostile packets are written straight into the real server's store (SEND now refuses them), as
a mailbox jammed before the server was fixed would hold; the TUI's fetch must get the good
mail around them, list them as unreadable and let the user delete them on the server.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from typing import Any

from mmtp_proto.canonical import message_hash
from mmtp_proto.client import Client
from mmtp_proto.message import open_message, open_packet
from mmtp_proto.minter import Minter
from mmtp_proto.outgoing import Outgoing
from mmtp_proto.store import _checksum
from mmtp_tui.sync import delete_unreadable, fetch

ALICE = "(alice)%(localhost)"
BOB = "(bob)%(localhost)"


def send(session, to: str, subject: str, body: str) -> str:
    with session.connected() as client:
        outgoing = Outgoing(to=[to], subject=subject, body=body)
        return session.send(client, outgoing, minter=Minter(processes=1)).message_id


def clear_packet(**changes: Any) -> dict[str, Any]:
    content = {"subject": "hi", "body": "text"}
    packet: dict[str, Any] = {
        "meta": {"type": "SEND", "messageId": secrets.token_hex(16), "timestamp": int(time.time())},
        "sender": ALICE,
        "recipient": BOB,
        "content": content,
        "verification": {"messageHash": message_hash(content), "signature": None},
    }
    for key, value in changes.items():
        packet[key] = value
    return packet


def hostile_packets() -> list[Any]:
    bad_refs = clear_packet()
    bad_refs["meta"]["references"] = 7
    bad_attachments = clear_packet(content={"subject": "x", "body": "y", "attachments": 5})
    deep_subject = clear_packet(content={"subject": [[[[["deep"]]]]], "body": ""})
    return [
        bad_refs,  # crashed storing it (an int is not a list of ids)
        bad_attachments,  # crashed opening it
        deep_subject,  # not text where text belongs
        clear_packet(meta=["no", "id"]),  # no id at all: a marker stands in
        "not even an object",  # cost the whole page
    ]


def store_directly(server, recipient: str, items: list[Any]) -> None:
    """Rows as the server keeps them, written beside the running server (WAL allows it);
    its cached CHECK count does not see them."""
    db = sqlite3.connect(server.config.data_dir / "mmtp.db", isolation_level=None)
    try:
        for item in items:
            meta = item.get("meta") if isinstance(item, dict) else None
            message_id = meta.get("messageId") if isinstance(meta, dict) else None
            text = json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            db.execute(
                "INSERT INTO messages (recipient, message_id, message_hash, received_at, packet,"
                " checksum) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    recipient,
                    message_id or secrets.token_hex(16),
                    "0" * 64,
                    int(time.time()),
                    text,
                    _checksum(text),
                ),
            )
    finally:
        db.close()


def test_fetch_keeps_going_past_unreadable_messages(server, make_session):
    alice = make_session(server, "alice", ALICE)
    bob = make_session(server, "bob", BOB)
    send(alice, BOB, "before", "first good one")
    hostile = hostile_packets()
    store_directly(server, BOB, hostile)
    send(alice, BOB, "after", "second good one")

    result = fetch(bob, page=2)  # small pages: the bad ones straddle page boundaries

    assert result.new == 2 and result.unreadable == len(hostile)
    inbox = bob.store.folder("bob", "Inbox")
    good = sorted(m.subject for m in inbox if not m.unreadable)
    assert good == ["after", "before"]
    bad = [m for m in inbox if m.unreadable]
    assert len(bad) == len(hostile)
    assert all(m.problem and m.subject == "(unreadable message)" for m in bad)
    real_ids = {p["meta"]["messageId"] for p in hostile[:3]}
    assert real_ids <= {m.message_id for m in bad}
    markers = [m for m in bad if m.message_id.startswith("unreadable-")]
    assert len(markers) == 2
    with bob.connected() as client:
        assert client.receive_all(BOB).count == len(
            hostile
        )  # the good ones went; the bad ones wait

    # A second fetch finishes with nothing new: the cursor moved past them.
    again = fetch(bob)
    assert again.new == 0 and again.unreadable == 0

    # The user deletes one with a real id: gone on the server and here.
    target = next(m for m in bad if m.message_id in real_ids)
    assert delete_unreadable(bob, target) == 1
    assert bob.store.get(target.id) is None
    with bob.connected() as client:
        assert client.receive_all(BOB).count == len(hostile) - 1
    # One with only a marker is forgotten here (the server has no id to delete it by).
    assert delete_unreadable(bob, markers[0]) == 0
    assert bob.store.get(markers[0].id) is None


def test_blocking_client_gives_a_per_message_error(server, make_session):
    alice = make_session(server, "alice", ALICE)
    bob = make_session(server, "bob", BOB)
    hostile = hostile_packets()
    store_directly(server, BOB, hostile)
    send(alice, BOB, "after", "the good one")
    client = bob.client()
    with client:
        client.auth(BOB, bob.key())
        page = client.receive_all(BOB)
        opened = [client.open(packet, BOB) for packet in page.messages]
        opened_anyhow = [client.open(packet) for packet in page.messages]
    assert len(opened) == len(hostile) + 1
    assert [o.unreadable for o in opened] == [True] * len(hostile) + [False]
    assert [o.unreadable for o in opened_anyhow] == [True] * len(hostile) + [False]
    assert opened[-1].subject == "after" and opened[-1].body == "the good one"
    assert all(o.problem for o in opened[:-1])
    assert opened[0].message_id == hostile[0]["meta"]["messageId"]


def test_open_packet_never_raises_for_odd_shapes():
    odd: list[Any] = [
        None,
        [],
        {},
        clear_packet(sender=5),
        clear_packet(content="text"),
        clear_packet(content={"subject": "s", "body": {"a": 1}}),
        clear_packet(content={"encrypted": 12}),
        clear_packet(content={"subject": "s", "body": "b", "to": 5}),
        clear_packet(content={"subject": "s", "body": "b", "cc": [["x"]]}),
        clear_packet(verification=[]),
    ]
    for packet in odd:
        opened = open_packet(packet)
        assert opened.problem, packet
        again = open_message(packet, my_key=None, sender_key_for=lambda sender: None)
        assert again.problem, packet
    assert Client().open(clear_packet(recipient=5)).unreadable


async def test_the_list_shows_unreadable_mail_and_deletes_it_on_the_server(
    server, make_session, tui_settings
):
    from textual.widgets import DataTable

    from mmtp_tui.app import MailApp
    from mmtp_tui.screens.dialogs import ConfirmScreen
    from mmtp_tui.screens.main import MainScreen
    from mmtp_tui.widgets.message_list import MessageList

    alice = make_session(server, "alice", ALICE)
    hostile = clear_packet(content={"subject": "x", "body": "y", "attachments": 5})
    store_directly(server, BOB, [hostile])
    app = MailApp(tui_settings(server, "bob", BOB), known_servers=alice.known_servers)
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(500):
            if isinstance(app.screen, MainScreen):
                break
            await pilot.pause(0.02)
        main = app.screen
        main.session.generate_key("ed25519", None)
        main.session.register()
        send(alice, BOB, "good", "after the bad one")

        async def settle() -> None:
            for _ in range(1000):
                await pilot.pause(0.02)
                if not any(w.is_running for w in app.workers):
                    return

        await pilot.press("F")  # fetch
        await settle()
        table = main.query_one(MessageList)
        assert table.row_count == 2
        subjects = [str(table.get_row_at(i)[2]) for i in range(2)]
        assert any(s.startswith("⚠ unreadable: the attachments") for s in subjects), subjects
        assert "good" in subjects
        table.move_cursor(row=next(i for i, s in enumerate(subjects) if "unreadable" in s))
        DataTable.focus(table)
        await pilot.press("d")
        for _ in range(200):
            if isinstance(app.screen, ConfirmScreen):
                break
            await pilot.pause(0.02)
        await pilot.press("y")
        await settle()
        assert table.row_count == 1
        assert [m.subject for m in main.store.folder("bob", "Inbox")] == ["good"]
        with main.session.connected() as client:
            assert client.receive_all(BOB).count == 0  # gone on the server too


def test_a_packet_stored_before_the_depth_limit_does_not_jam_the_mailbox(server, make_session):
    """Stored before SPEC §1's depth limit, one packet made every RECEIVE answer unreadable."""
    alice = make_session(server, "alice", ALICE)
    bob = make_session(server, "bob", BOB)
    deep = clear_packet()
    token: Any = "x"
    for _ in range(40):
        token = {"t": token}
    deep["meta"]["hashcashToken"] = token
    store_directly(server, BOB, [deep])
    send(alice, BOB, "after", "still arrives")
    with bob.connected() as client:
        page = client.receive_all(BOB)
    assert [client.open(packet, BOB).subject for packet in page.messages] == ["after"]
    assert fetch(bob).new == 1
