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
