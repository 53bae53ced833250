"""Real servers on several domains for the federation tests: a.test, b.test, c.test on
loopback, each with its own data directory, relaying to the others by static routes (or DNS)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from configs import make_config

from mmtp_proto.client import Client
from mmtp_proto.server import Server

A, B, C = "a.test", "b.test", "c.test"
ALICE = "(alice)%(a.test)"
BOB = "(bob)%(b.test)"
CAROL = "(carol)%(c.test)"
DAN = "(dan)%(c.test)"


def relay_server(tmp_path: Path, domain: str, **overrides: Any) -> Server:
    """Bound (listening), not yet running: routes can be added before start."""
    values: dict[str, Any] = dict(
        domains=[domain],
        relay=True,
        relay_tls_verify="tofu",
        retry_base=0.3,
        retry_max=1.0,
        log_level="INFO",
    )
    values.update(overrides)
    server = Server(make_config(tmp_path / domain, **values))
    server.bind()
    return server


def link_all(servers: list[Server]) -> None:
    """Every server gets a static route to every other one's TLS port."""
    for server in servers:
        assert server.federation is not None
        for other in servers:
            if other is not server:
                assert other.tls_address is not None
                server.federation.set_route(other.config.domains[0], *other.tls_address)


def clients(tmp_path: Path) -> Iterator[Callable[[Server, str], Client]]:
    """A factory of `client_for`, all disconnected at the end."""
    made: list[Client] = []

    def make(server: Server, email: str) -> Client:
        client = client_for(server, tmp_path, email)
        made.append(client)
        return client

    yield make
    for client in made:
        client.disconnect()


def client_for(server: Server, tmp_path: Path, email: str) -> Client:
    """A connected client of `server` holding a fresh key for `email`, registered there."""
    assert server.tls_address is not None
    name = email[1 : email.index(")")]
    client = Client(
        "127.0.0.1",
        secure_port=server.tls_address[1],
        verify="insecure",
        keystore=tmp_path / f"keys-{name}",
    )
    client.connect()
    try:
        client.generate_keys(email, name.capitalize(), algorithm="ed25519")
        client.register_public_key(email)
        client.auth(email)
    except BaseException:
        # Nobody else holds it: left open, its TLS socket's ResourceWarning would fail
        # whichever test runs when it is collected.
        client.disconnect()
        raise
    return client


def wait_for(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(interval)


def inbox(client: Client, email: str) -> list[dict[str, Any]]:
    return client.receive_all(email).messages
