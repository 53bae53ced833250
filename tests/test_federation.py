"""Federation end to end (SPEC §8–§10): real servers for a.test, b.test and c.test on
loopback, real TLS, domain keys, the outbound queue and DSNs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from federation_helpers import (
    ALICE,
    BOB,
    CAROL,
    DAN,
    clients,
    inbox,
    link_all,
    relay_server,
    wait_for,
)

from mmtp_proto.message import VERIFIED
from mmtp_proto.server import Server

client = pytest.fixture(clients)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    made = [relay_server(tmp_path, d) for d in ("a.test", "b.test", "c.test")]
    link_all(made)
    for server in made:
        server.start()
    yield made
    for server in made:
        with contextlib.suppress(Exception):
            server.stop()


def test_a_message_crosses_domains_and_is_read_decrypted_and_verified(servers, client):
    a, b, _c = servers
    alice = client(a, ALICE)
    bob = client(b, BOB)
    sent = alice.send_mail(ALICE, BOB, "Hello from a", "Across domains.")
    assert sent.signed
    messages = wait_for(lambda: inbox(bob, BOB))
    assert len(messages) == 1
    packet = messages[0]
    assert packet["sender"] == ALICE
    assert packet["meta"]["signatureVerified"] is True
    opened = bob.open(packet)
    assert opened.subject == "Hello from a"
    assert opened.body == "Across domains."
    assert opened.signature == VERIFIED


def test_one_message_to_two_domains_with_to_cc_and_bcc(servers, client):
    a, b, c = servers
    alice = client(a, ALICE)
    bob, carol, dan = client(b, BOB), client(c, CAROL), client(c, DAN)
    outcomes = alice.send_mail(ALICE, [BOB], "Plans", "Friday at noon.", cc=[CAROL], bcc=[DAN])
    assert set(outcomes) == {BOB, CAROL, DAN}
    for result in outcomes.values():
        assert not isinstance(result, Exception), result
        assert result.queued
    ids = {result.message_id for result in outcomes.values()}
    assert len(ids) == 1  # one messageId shared by every recipient's packet
    received = {}
    for reader, email in ((bob, BOB), (carol, CAROL), (dan, DAN)):
        packet = wait_for(lambda r=reader, e=email: inbox(r, e))[0]
        assert packet["meta"]["signatureVerified"] is True
        opened = reader.open(packet)
        assert (opened.subject, opened.body, opened.signature) == (
            "Plans",
            "Friday at noon.",
            VERIFIED,
        )
        received[email] = (packet, opened)
    # To and Cc share one ciphertext (one hash); the Bcc copy is its own.
    hashes = {e: p["verification"]["messageHash"] for e, (p, _o) in received.items()}
    assert hashes[BOB] == hashes[CAROL] != hashes[DAN]
    # Every recipient sees To and Cc; nobody sees the Bcc recipient.
    for _packet, opened in received.values():
        assert (opened.to, opened.cc) == ([BOB], [CAROL])


def dsns(client, email: str) -> list[dict]:
    return [m for m in inbox(client, email) if m["meta"]["type"] == "DSN"]


def test_an_unknown_recipient_bounces_with_a_failed_report_threaded_under_the_original(
    servers, client
):
    a, _b, _c = servers
    alice = client(a, ALICE)
    nobody = "(nobody)%(b.test)"
    outcomes = alice.send_mail(ALICE, [nobody], "Anyone?", "Hello.", encrypt=False)
    sent = outcomes[nobody]
    assert not isinstance(sent, Exception), sent
    report = wait_for(lambda: dsns(alice, ALICE))[0]
    assert report["sender"] == "(postmaster)%(a.test)"
    assert report["meta"]["inReplyTo"] == sent.message_id
    dsn = report["content"]["dsn"]
    assert (dsn["action"], dsn["code"], dsn["recipient"]) == ("failed", "UNKNOWN_RECIPIENT", nobody)
    assert dsn["attempts"] == 1


def test_the_recipient_server_down_for_a_while_then_back(tmp_path, client):
    a = relay_server(tmp_path, "a.test", delay_notice_seconds=0.5)
    b = relay_server(tmp_path, "b.test")
    link_all([a, b])
    a.start()
    b.start()
    b_port = b.tls_address
    try:
        bob = client(b, BOB)
        bob.disconnect()
        b.stop()
        alice = client(a, ALICE)
        # The key was fetched while b.test was up; the message itself goes while it is down.
        outcomes = alice.send_mail(ALICE, [BOB], "Patience", "It waits.", encrypt=False)
        assert not isinstance(outcomes[BOB], Exception), outcomes[BOB]
        report = wait_for(lambda: dsns(alice, ALICE), timeout=30)[0]
        assert report["content"]["dsn"]["action"] == "delayed"
        assert report["content"]["dsn"]["code"] == "REMOTE_UNAVAILABLE"
        b = relay_server(tmp_path, "b.test", secure_port=b_port[1])
        link_all([a, b])
        b.start()
        bob = _reconnect(b, tmp_path)
        try:
            messages = wait_for(lambda: inbox(bob, BOB), timeout=30)
            assert [m["meta"]["messageId"] for m in messages] == [outcomes[BOB].message_id]
        finally:
            bob.disconnect()
    finally:
        a.stop()
        b.stop()


def _reconnect(server, tmp_path):
    from mmtp_proto.client import Client

    c = Client(
        "127.0.0.1",
        secure_port=server.tls_address[1],
        verify="insecure",
        keystore=tmp_path / "keys-bob",
    )
    c.connect()
    try:
        c.auth(BOB)
    except BaseException:
        c.disconnect()
        raise
    return c


def test_a_second_batch_reuses_the_relay_connection(servers, client, caplog):
    a, b, _c = servers
    alice, bob = client(a, ALICE), client(b, BOB)
    caplog.set_level("INFO", logger="mmtp.server")
    for n in range(3):
        alice.send_mail(ALICE, BOB, f"Note {n}", "One connection.")
        wait_for(lambda n=n: len(inbox(bob, BOB)) == n + 1)
    auths = [r for r in caplog.records if "DOMAIN_AUTH OK" in r.getMessage()]
    assert len(auths) == 1


def test_a_reply_threads_back_across_domains(servers, client):
    a, b, _c = servers
    alice, bob = client(a, ALICE), client(b, BOB)
    first = alice.send_mail(ALICE, BOB, "Question", "Lunch?")
    original = wait_for(lambda: inbox(bob, BOB))[0]
    reply = bob.send_mail(
        BOB,
        ALICE,
        "Re: Question",
        "Yes.",
        type="REPLY",
        in_reply_to=first.message_id,
        references=[first.message_id],
    )
    assert reply.queued
    got = wait_for(lambda: [m for m in inbox(alice, ALICE) if m["meta"]["type"] == "REPLY"])[0]
    assert got["meta"]["inReplyTo"] == original["meta"]["messageId"] == first.message_id
    opened = alice.open(got)
    assert (opened.body, opened.signature) == ("Yes.", VERIFIED)
