"""Issue 8: Sent shows each recipient as relaying (the home server took it for another
domain), then delivered or failed as the delivery reports (DSNs, SPEC §10) fetched later say.
Two real servers, a.test and b.test, on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from federation_helpers import A, B, link_all, relay_server, wait_for

from mmtp_proto.errors import LocalError
from mmtp_proto.keystore import Keystore
from mmtp_proto.known_servers import KnownServers
from mmtp_proto.minter import Minter
from mmtp_proto.outgoing import Outgoing
from mmtp_proto.sending import SendResult
from mmtp_proto.server import Server
from mmtp_tui import config, outbox
from mmtp_tui.mailstore import DELIVERED, FAILED, RELAYING, SENT, MailStore
from mmtp_tui.session import AccountSession
from mmtp_tui.sync import fetch
from mmtp_tui.widgets.reader import render_message

ALICE, BOB, NOBODY = f"(alice)%({A})", f"(bob)%({B})", f"(nobody)%({B})"
CAROL = f"(carol)%({A})"
EVERY_REPORT = ["failure", "delay", "success"]


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[str, Server]]:
    made = [relay_server(tmp_path, d) for d in (A, B)]
    link_all(made)
    for server in made:
        server.start()
    yield dict(zip((A, B), made, strict=True))
    for server in made:
        with contextlib.suppress(Exception):
            server.stop()


@pytest.fixture
def user(tmp_path: Path) -> Iterator[Callable[[Server, str], AccountSession]]:
    stores: list[MailStore] = []

    def make(server: Server, address: str) -> AccountSession:
        name = address[1 : address.index(")")]
        home = tmp_path / f"user-{name}"
        store = MailStore(home / "mail.sqlite3")
        stores.append(store)
        host, port = server.plain_address
        account = config.Account(
            name=name, address=address, host=host, port=port, secure_port=server.tls_address[1]
        )
        session = AccountSession(
            account,
            store=store,
            keystore=Keystore(home / "keystore"),
            known_servers=KnownServers(home / "known_servers"),
            on_new_fingerprint=lambda host, port, fp: True,
        )
        session.generate_key("ed25519", None)
        session.register()
        return session

    yield make
    for store in stores:
        store.close()


def states(session: AccountSession, message_id: str) -> dict[str, tuple[str, str]]:
    return {d.address: (d.state, d.error) for d in session.store.deliveries("alice", message_id)}


def fetched_until(session: AccountSession, message_id: str, address: str, state: str) -> None:
    def settled() -> bool:
        fetch(session)
        return states(session, message_id).get(address, ("", ""))[0] == state

    wait_for(settled, timeout=30, interval=0.3)


def reader_text(session: AccountSession, message_id: str) -> str:
    (copy,) = [m for m in session.store.folder("alice", "Sent") if m.message_id == message_id]
    deliveries = session.store.deliveries("alice", message_id)
    return render_message(copy, [copy], deliveries).plain


def test_a_remote_recipient_is_relaying_then_delivered_once_the_report_is_fetched(servers, user):
    alice = user(servers[A], ALICE)
    user(servers[B], BOB)
    outgoing = Outgoing(to=[BOB], subject="Over there", body="hi", notify=EVERY_REPORT)
    with alice.connected() as client:
        sent = alice.send(client, outgoing, minter=Minter(processes=0))
    assert isinstance(sent, SendResult) and sent.queued
    assert sent.packet["meta"]["notify"] == EVERY_REPORT and sent.signature_verified
    assert states(alice, sent.message_id) == {BOB: (RELAYING, "")}
    assert "⏳ relaying (bob)%(b.test)" in reader_text(alice, sent.message_id)

    fetched_until(alice, sent.message_id, BOB, DELIVERED)
    assert states(alice, sent.message_id) == {BOB: (DELIVERED, "")}
    text = reader_text(alice, sent.message_id)
    assert "✓ delivered (bob)%(b.test)" in text and "relaying" not in text
    # The report itself is in the Inbox, threaded under the message it is about.
    (report,) = [m for m in alice.store.folder("alice", "Inbox") if m.in_reply_to]
    assert report.in_reply_to == sent.message_id


def test_several_recipients_local_sent_remote_delivered_unknown_remote_failed(servers, user):
    """The Outbox pipeline (fanout): a local recipient is sent (it is in the mailbox), a
    remote one relaying then delivered, an unknown remote one relaying then failed with the
    remote's words as plain text."""
    alice = user(servers[A], ALICE)
    user(servers[A], CAROL)
    user(servers[B], BOB)
    outgoing = Outgoing(
        to=[BOB, CAROL], cc=[NOBODY], subject="Three", encrypt=False, notify=EVERY_REPORT
    )
    outcomes = outbox.send_or_queue(alice, outgoing, minter=Minter(processes=0))
    assert isinstance(outcomes, dict)
    results = [o for o in outcomes.values() if isinstance(o, SendResult)]
    assert len(results) == 3, outcomes
    message_id = results[0].message_id
    assert states(alice, message_id) == {
        BOB: (RELAYING, ""),
        CAROL: (SENT, ""),
        NOBODY: (RELAYING, ""),
    }
    fetched_until(alice, message_id, NOBODY, FAILED)
    fetched_until(alice, message_id, BOB, DELIVERED)
    now = states(alice, message_id)
    assert now[BOB] == (DELIVERED, "") and now[CAROL] == (SENT, "")
    assert now[NOBODY][0] == FAILED and now[NOBODY][1], now
    text = reader_text(alice, message_id)
    assert "✓ delivered (bob)%(b.test)" in text
    assert "✓ sent    (carol)%(a.test)" in text
    assert "✗ failed  (nobody)%(b.test) (Cc): " in text


def test_the_server_default_asks_no_success_report_and_it_stays_relaying(servers, user):
    """Without notify (failure and delay only) no "delivered" report comes: relaying is the
    last word, and a failure would still be told."""
    alice = user(servers[A], ALICE)
    user(servers[B], BOB)
    with alice.connected() as client:
        sent = alice.send(client, Outgoing(to=[BOB], subject="quiet"), minter=Minter(processes=0))
    assert isinstance(sent, SendResult) and "notify" not in sent.packet["meta"]
    with alice.connected() as client:
        other = alice.send(
            client, Outgoing(to=[NOBODY], subject="bounce", encrypt=False), minter=Minter(0)
        )
    assert isinstance(other, SendResult)
    fetched_until(alice, other.message_id, NOBODY, FAILED)
    assert states(alice, sent.message_id) == {BOB: (RELAYING, "")}


def test_a_report_from_anyone_but_the_home_postmaster_changes_nothing(servers, user):
    """Only the account's own server makes DSNs: a look-alike from elsewhere is ignored."""
    from mmtp_tui.fanout import note_report

    alice = user(servers[A], ALICE)
    alice.store.set_delivery("alice", "a" * 32, BOB, RELAYING)
    report = {
        "meta": {"type": "DSN"},
        "sender": f"(postmaster)%({B})",
        "content": {
            "dsn": {"messageId": "a" * 32, "recipient": BOB, "action": "failed", "diagnostic": "x"}
        },
    }
    assert not note_report(alice, report)
    report["sender"] = f"(postmaster)%({A})"
    report["content"]["dsn"]["diagnostic"] = "[b]no[/b]\x1b[31m"
    assert note_report(alice, report)
    assert states(alice, "a" * 32) == {BOB: (FAILED, "[b]no[/b] [31m")}
    # A late "delayed" does not undo it, nor does sending writing "relaying" again.
    report["content"]["dsn"]["action"] = "delayed"
    assert not note_report(alice, report)
    alice.store.set_delivery("alice", "a" * 32, BOB, RELAYING)
    assert states(alice, "a" * 32)[BOB][0] == FAILED
    # No row for that recipient: nothing is made up.
    report["content"]["dsn"]["recipient"] = f"(zed)%({B})"
    report["content"]["dsn"]["action"] = "delivered"
    assert not note_report(alice, report)
    assert set(states(alice, "a" * 32)) == {BOB}


def test_delivery_reports_setting_round_trips_and_is_checked(tmp_path: Path):
    settings = config.Settings(path=tmp_path / "tui.toml")
    assert settings.delivery_reports == "failure,delay" and settings.delivery_notify is None
    settings.delivery_reports = "failure,delay,success"
    settings.save()
    loaded = config.load(tmp_path / "tui.toml")
    assert loaded.delivery_notify == EVERY_REPORT
    assert config.parse_delivery_reports("") == []
    assert config.parse_delivery_reports("delay, failure") is None  # the server's default
    (tmp_path / "tui.toml").write_text('delivery_reports = "failure,bounce"\n')
    with pytest.raises(LocalError, match="delivery_reports"):
        config.load(tmp_path / "tui.toml")
