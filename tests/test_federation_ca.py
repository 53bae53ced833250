"""Relay TLS in `ca` mode end to end (SPEC §8.2): servers with certificates from a test CA
deliver to each other; a certificate for the wrong name is refused, and the mail waits."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from federation_helpers import ALICE, BOB, CAROL, clients, inbox, link_all, relay_server, wait_for
from test_relay_tls import CA

from mmtp_proto.server import Server

client = pytest.fixture(clients)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    ca = CA(tmp_path)
    made = []
    for domain, names in (("a.test", ["a.test"]), ("b.test", ["b.test"]), ("c.test", ["x.test"])):
        cert, key = ca.leaf(domain, names)
        made.append(
            relay_server(
                tmp_path,
                domain,
                cert=cert,
                key=key,
                relay_tls_verify="ca",
                relay_ca=ca.path,
                delay_notice_seconds=0.5,
            )
        )
    link_all(made)
    for server in made:
        server.start()
    yield made
    for server in made:
        with contextlib.suppress(Exception):
            server.stop()


def test_ca_verified_relay_delivers_and_a_wrong_name_is_refused(servers, client, caplog):
    a, b, c = servers
    alice, bob = client(a, ALICE), client(b, BOB)
    client(c, CAROL)
    outcomes = alice.send_mail(ALICE, [BOB, CAROL], "CA", "Verified.", encrypt=False)
    assert not isinstance(outcomes[BOB], Exception), outcomes[BOB]
    assert bob.open(wait_for(lambda: inbox(bob, BOB))[0]).body == "Verified."
    # c.test's certificate names x.test: never trusted, so the message waits and the
    # sender hears it is delayed.
    assert not isinstance(outcomes[CAROL], Exception), outcomes[CAROL]
    report = wait_for(
        lambda: [m for m in inbox(alice, ALICE) if m["meta"]["type"] == "DSN"], timeout=30
    )[0]
    dsn = report["content"]["dsn"]
    assert (dsn["action"], dsn["recipient"], dsn["code"]) == (
        "delayed",
        CAROL,
        "REMOTE_UNAVAILABLE",
    )
    assert "certificate" in dsn["diagnostic"]
    assert any("relay TLS verification FAILED" in r.getMessage() for r in caplog.records)
