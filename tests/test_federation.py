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
