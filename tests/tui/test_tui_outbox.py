"""The Outbox for a message to several recipients (To, Cc, Bcc; one packet, stamp and
signature each), against a real server on loopback that is stopped and started again."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ALICE, BOB

from mmtp_proto.minter import Minter
from mmtp_proto.outgoing import Outgoing
from mmtp_proto.sending import SendResult
from mmtp_tui import outbox
from mmtp_tui.mailstore import FAILED, QUEUED, SENT, MailStore
from mmtp_tui.sync import fetch

CAROL = "(carol)%(localhost)"
DAVE = "(dave)%(localhost)"
NOBODY = "(nobody)%(localhost)"


class Restartable:
    """A server whose data and ports outlive a stop, as a real one's do."""

    def __init__(self, start_server, data_dir: Path) -> None:
        self.start_server = start_server
        self.data_dir = data_dir
        self.server = start_server(data_dir=data_dir)
        self.ports = self.server.plain_address[1], self.server.tls_address[1]

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        port, secure = self.ports
        self.server = self.start_server(data_dir=self.data_dir, port=port, secure_port=secure)


@pytest.fixture
def live(start_server, tmp_path) -> Restartable:
    return Restartable(start_server, tmp_path / "server-data")


@pytest.fixture
def people(live, make_session):
    alice = make_session(live.server, "alice", ALICE)
    others = [make_session(live.server, n, a) for n, a in (("bob", BOB), ("carol", CAROL))]
    others.append(make_session(live.server, "dave", DAVE))
    for address in (BOB, CAROL, DAVE):
        alice.fetch_contact(address)  # pinned: sealing works offline
    return alice, *others


def three() -> Outgoing:
    return Outgoing(to=[BOB], cc=[CAROL], bcc=[DAVE], subject="plans", body="for three")


def inbox_subjects(session) -> list[str]:
    fetch(session)
    return [m.subject for m in session.store.folder(session.account.name, "Inbox")]


def test_a_message_for_several_waits_whole_while_the_server_is_down(live, people):
    alice, bob, carol, dave = people
    live.stop()
    result = outbox.send_or_queue(alice, three(), minter=Minter())
    assert isinstance(result, outbox.QueueResult) and result.stamped
    (item,) = alice.store.outbox("alice")
    assert [(r.address, r.kind, r.state) for r in item.recipients] == [
        (BOB, "to", QUEUED),
        (CAROL, "cc", QUEUED),
        (DAVE, "bcc", QUEUED),
    ]
    packets = [r.packet for r in item.recipients]
    assert all(p is not None and p["meta"]["hashcashToken"] for p in packets)
    assert len({p["meta"]["messageId"] for p in packets}) == 1  # one message, three packets
    assert all(p["verification"]["signature"] for p in packets)  # one signature each
    bob_p, carol_p, dave_p = packets
    assert bob_p["content"] == carol_p["content"]  # To and Cc share one ciphertext
    assert dave_p["content"] != bob_p["content"]  # the Bcc recipient has a ciphertext of its own
    with pytest.raises(Exception, match="cannot connect"):
        outbox.flush(alice)  # still down: everything stays
    assert len(alice.store.outbox("alice")[0].waiting()) == 3

    live.start()
    flushed = outbox.flush(alice)
    assert flushed.reached == [BOB, CAROL, DAVE]
    assert len(flushed.sent) == 3 and not flushed.failed
    assert alice.store.outbox("alice") == []
    (copy,) = alice.store.folder("alice", "Sent")
    assert [(d.address, d.state) for d in alice.store.deliveries("alice", copy.message_id)] == [
        (BOB, SENT),
        (CAROL, SENT),
        (DAVE, SENT),
    ]
    for session in (bob, carol, dave):
        assert inbox_subjects(session) == ["plans"]
        assert session.store.folder(session.account.name, "Inbox")[0].body == "for three"


def test_a_send_cut_short_keeps_only_the_recipients_still_unsent(live, people):
    alice, bob, carol, dave = people
    started: list[int] = []

    def on_stamp(n: int, total: int) -> None:
        started.append(n)
        if n == 2:  # bob's packet went out; the server goes away before carol's
            live.stop()

    result = outbox.send_or_queue(alice, three(), minter=Minter(), on_stamp=on_stamp)
    assert isinstance(result, outbox.QueueResult)
    assert result.sent == [BOB] and not result.failed
    (item,) = alice.store.outbox("alice")
    states = {r.address: r.state for r in item.recipients}
    assert states == {BOB: SENT, CAROL: QUEUED, DAVE: QUEUED}
    assert item.recipients[0].packet is None  # done: nothing kept to send again
    assert [r.address for r in item.waiting()] == [CAROL, DAVE]
    (copy,) = alice.store.folder("alice", "Sent")  # bob has it: the copy is in Sent already
    assert {d.address: d.state for d in alice.store.deliveries("alice", copy.message_id)} == states

    live.start()
    flushed = outbox.flush(alice)
    assert flushed.reached == [CAROL, DAVE]  # not bob again
    assert [r.packet["recipient"] for r in flushed.sent] == [CAROL, DAVE]
    assert alice.store.outbox("alice") == []
    assert len(alice.store.folder("alice", "Sent")) == 1
    assert {d.state for d in alice.store.deliveries("alice", copy.message_id)} == {SENT}
    for session in (bob, carol, dave):
        assert inbox_subjects(session) == ["plans"]  # once each
    assert {
        m.message_id for s in (bob, carol, dave) for m in s.store.folder(s.account.name, "Inbox")
    } == {copy.message_id}


def test_without_pinned_keys_the_message_is_sealed_when_the_server_is_back(live, make_session):
    alice = make_session(live.server, "alice", ALICE)
    bob = make_session(live.server, "bob", BOB)
    carol = make_session(live.server, "carol", CAROL)
    live.stop()
    outgoing = Outgoing(to=[BOB, CAROL], subject="keys later", body="b")
    result = outbox.send_or_queue(alice, outgoing, minter=Minter())
    assert isinstance(result, outbox.QueueResult) and not result.stamped
    (item,) = alice.store.outbox("alice")
    assert [r.packet for r in item.recipients] == [None, None]
    live.start()
    assert outbox.flush(alice).reached == [BOB, CAROL]
    assert inbox_subjects(bob) == ["keys later"] and inbox_subjects(carol) == ["keys later"]


def test_a_refused_recipient_fails_alone_and_the_others_go_out(live, make_session):
    alice = make_session(live.server, "alice", ALICE)
    bob = make_session(live.server, "bob", BOB)
    live.stop()
    outgoing = Outgoing(to=[BOB, NOBODY], subject="hi", encrypt=False)
    result = outbox.send_or_queue(alice, outgoing, minter=Minter())
    assert isinstance(result, outbox.QueueResult) and result.stamped
    live.start()
    flushed = outbox.flush(alice)
    assert flushed.reached == [BOB]
    (words,) = flushed.failed
    assert "not sent to (nobody)%(localhost)" in words
    assert alice.store.outbox("alice") == []  # a refusal is not tried again
    (copy,) = alice.store.folder("alice", "Sent")
    deliveries = {d.address: d for d in alice.store.deliveries("alice", copy.message_id)}
    assert deliveries[BOB].state == SENT
    assert deliveries[NOBODY].state == FAILED and deliveries[NOBODY].error
    assert inbox_subjects(bob) == ["hi"]


def test_with_the_server_up_several_recipients_go_out_at_once(live, people):
    alice, _bob, _carol, dave = people
    outcomes = outbox.send_or_queue(alice, three(), minter=Minter())
    assert isinstance(outcomes, dict)
    assert list(outcomes) == [BOB, CAROL, DAVE]
    assert all(isinstance(o, SendResult) for o in outcomes.values())
    assert alice.store.outbox("alice") == []
    assert len(alice.store.folder("alice", "Sent")) == 1
    assert inbox_subjects(dave) == ["plans"]


def test_an_outbox_from_before_several_recipients_is_upgraded(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite3"
    MailStore(path).close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE outbox DROP COLUMN recipients")
    db.execute(
        "INSERT INTO outbox (account, outgoing, packet, created) VALUES ('alice', ?, NULL, 1)",
        ('{"to": ["bob@localhost"], "subject": "old"}',),
    )
    db.commit()
    db.close()
    store = MailStore(path)
    (item,) = store.outbox("alice")
    assert item.outgoing.subject == "old" and item.recipients == []
    store.close()


# ---------------------------------------------------------------- in the app


async def test_the_app_queues_a_message_for_three_and_sends_it_when_the_server_is_back(
    live, make_session, tui_settings
):
    from test_tui_app import SIZE, settle, wait_for_screen
    from test_tui_compose import compose_screen, notes, start_alice, wait_until
    from textual.widgets import Input, TextArea

    from mmtp_tui.app import MailApp
    from mmtp_tui.screens.main import MainScreen
    from mmtp_tui.widgets.message_list import MessageList

    bob, carol, dave = (
        make_session(live.server, n, a) for n, a in (("bob", BOB), ("carol", CAROL), ("dave", DAVE))
    )
    app = MailApp(tui_settings(live.server), known_servers=bob.known_servers)
    async with app.run_test(size=SIZE) as pilot:
        main = await start_alice(app, pilot)
        for address in (BOB, CAROL, DAVE):
            main.session.fetch_contact(address)
        await settle(app, pilot)
        live.stop()
        await pilot.press("c")
        compose = await compose_screen(app, pilot)
        compose.query_one("#to", Input).value = BOB
        compose.query_one("#cc", Input).value = CAROL
        compose.query_one("#bcc", Input).value = DAVE
        compose.query_one("#subject", Input).value = "for three"
        compose.query_one("#body", TextArea).load_text("queued whole")
        await pilot.press("ctrl+s")
        await wait_for_screen(app, pilot, MainScreen)
        await settle(app, pilot)
        assert any("Outbox" in n for n in notes(app))
        (item,) = main.store.outbox("alice")
        assert [r.address for r in item.waiting()] == [BOB, CAROL, DAVE]
        assert all(r.packet and r.packet["meta"]["hashcashToken"] for r in item.recipients)
        main.folder = "Outbox"
        main.refresh_view()
        await pilot.pause()
        table = main.query_one(MessageList)
        assert table.selected_queued_id() == item.id
        assert "3/3 left" in str(table.get_row_at(0)[3])
        text = str(main.query_one("#reader-text").render())
        assert "3 of 3 recipients still to send to" in text
        assert text.count("⏳ queued") == 3 and "(dave)%(localhost) (Bcc)" in text

        live.start()
        main.check_new()
        await settle(app, pilot)
        await wait_until(pilot, lambda: not main.store.outbox("alice"))
        await settle(app, pilot)
        assert table.row_count == 0
        main.folder = "Sent"
        main.refresh_view()
        await pilot.pause()
        text = str(main.query_one("#reader-text").render())
        assert text.count("✓ sent") == 3 and "(carol)%(localhost) (Cc)" in text
    for session in (bob, carol, dave):
        assert inbox_subjects(session) == ["for three"]


async def test_the_app_shows_a_send_cut_short_per_recipient(live, people, tui_settings):
    from test_tui_app import SIZE, settle, wait_for_screen
    from test_tui_compose import wait_until

    from mmtp_tui.app import MailApp
    from mmtp_tui.screens.main import MainScreen
    from mmtp_tui.session import AccountSession

    alice, bob, carol, dave = people
    settings = tui_settings(live.server)
    app = MailApp(settings, known_servers=alice.known_servers, store=alice.store)
    async with app.run_test(size=SIZE) as pilot:
        main = await wait_for_screen(app, pilot, MainScreen)
        await settle(app, pilot)
        session: AccountSession = main.session
        session.set_key(alice.key())

        def on_stamp(n: int, total: int) -> None:
            if n == 2:
                live.stop()

        result = outbox.send_or_queue(session, three(), minter=Minter(), on_stamp=on_stamp)
        assert isinstance(result, outbox.QueueResult) and result.sent == [BOB]
        main.folder = "Sent"
        main.refresh_view()
        await pilot.pause()
        text = str(main.query_one("#reader-text").render())
        assert "✓ sent    (bob)%(localhost)" in text
        assert "⏳ queued  (carol)%(localhost)" in text
        assert "⏳ queued  (dave)%(localhost) (Bcc)" in text
        main.folder = "Outbox"
        main.refresh_view()
        await pilot.pause()
        assert "2 of 3 recipients still to send to" in str(main.query_one("#reader-text").render())
        live.start()
        main.check_new()
        await settle(app, pilot)
        await wait_until(pilot, lambda: not main.store.outbox("alice"))
        main.folder = "Sent"
        main.refresh_view()
        await pilot.pause()
        assert str(main.query_one("#reader-text").render()).count("✓ sent") == 3
    for other in (bob, carol, dave):
        assert inbox_subjects(other) == ["plans"]


def test_taking_a_send_cut_short_back_drafts_only_the_recipients_left(live, people):
    alice, *_ = people

    def on_stamp(n: int, total: int) -> None:
        if n == 2:
            live.stop()

    outbox.send_or_queue(alice, three(), minter=Minter(), on_stamp=on_stamp)
    (item,) = alice.store.outbox("alice")
    outbox.take_back(alice, item)
    assert alice.store.outbox("alice") == []
    (draft,) = alice.store.drafts("alice")
    assert (draft.outgoing.to, draft.outgoing.cc, draft.outgoing.bcc) == ([], [CAROL], [DAVE])
    (copy,) = alice.store.folder("alice", "Sent")
    states = {
        d.address: (d.state, d.error) for d in alice.store.deliveries("alice", copy.message_id)
    }
    assert states[BOB] == (SENT, "")
    assert states[CAROL][0] == FAILED and "taken out of the Outbox" in states[CAROL][1]


def test_the_queued_notice_says_who_got_the_message_already() -> None:
    from mmtp_tui.outbox import QueueResult
    from mmtp_tui.screens.compose_sending import queued_words

    whole = queued_words(QueueResult(1, stamped=True))
    assert "cannot be reached" in whole and "stamped" in whole
    partial = queued_words(
        QueueResult(2, stamped=True, sent=["(bob)%(a.test)"], failed={"(eve)%(a.test)": "no"})
    )
    assert "Sent to (bob)%(a.test)." in partial
    assert "Not sent to (eve)%(a.test)." in partial
    assert "cannot be reached" not in partial and "wait in the Outbox" in partial
