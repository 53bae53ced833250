"""An in-memory server for the SPEC revision-2 rule tests: one Protocol over a real store
(SQLite in its data dir, or PostgreSQL), connections without sockets, and a clock the test
moves (the loop's turn: process, with the OpenPGP jobs a request waits for run in this
thread, commit, release).

A rule module runs on both backends by marking itself `both_backends` and having its server
fixtures take `database` (tests/conftest.py) and call `use_database`: every harness Server
that test makes, a restarted one included, then keeps its data in that database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from configs import make_config
from helpers import auth_signature, key_for

from mmtp_proto import pgp
from mmtp_proto.backends import open_store
from mmtp_proto.deferred import run_inline
from mmtp_proto.framing import encode_frame
from mmtp_proto.protocol import Protocol
from mmtp_proto.server_connection import ServerConnection


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def use_database(monkeypatch: pytest.MonkeyPatch, database: str | None) -> str | None:
    """Make every harness Server of the current test use `database` (None: SQLite)."""
    monkeypatch.setattr(Server, "database", database)
    return database


class Server:
    # The `database` of the Servers a test makes unless it names one; see `use_database`.
    database: str | None = None

    def __init__(self, data_dir: Path, *, now: float, **overrides: Any) -> None:
        self.data_dir = data_dir
        overrides.setdefault("database", Server.database)
        self.config = make_config(data_dir, **overrides)
        self.clock = Clock(now)
        # Any: the rule tests also use the operator's store methods (set_account, invites),
        # which both stores have and the protocol's `Storage` does not name.
        self.store: Any = open_store(self.config.database, data_dir, fsync=False)
        self.protocol = Protocol(self.config, self.store, clock=self.clock)

    def close(self) -> None:
        self.store.close()

    def connect(self, peer: str = "192.0.2.7") -> Conn:
        return Conn(self, peer)


class Conn:
    def __init__(self, server: Server, peer: str) -> None:
        self.server = server
        self.conn = ServerConnection(server.protocol, peer=peer, tls=True)
        self.conn.start()
        self.greeting = self._frames()[0]

    def _frames(self) -> list[dict[str, Any]]:
        data = self.conn.data_to_send()
        return [json.loads(line) for line in data.split(b"\n")[:-1]]

    def request(self, action: str, **data: Any) -> dict[str, Any]:
        self.conn.receive_data(encode_frame({"action": action, "data": data}))
        self.conn.process(64, 1 << 30)
        while (job := self.conn.take_job()) is not None:
            self.conn.deliver(run_inline(job))
            self.conn.process(64, 1 << 30)
        self.server.protocol.commit()
        (answer,) = self._frames()
        return answer

    def code(self, action: str, **data: Any) -> str:
        answer = self.request(action, **data)
        return "OK" if answer["status"] == "OK" else answer["error"]["code"]

    def register(self, email: str, key: pgp.PrivateKey | str | None = None, **data: Any) -> str:
        armored = key if isinstance(key, str) else (key or key_for(email)).public.armored
        return self.code("REGISTER_KEY", email=email, publicKey=armored, **data)

    def auth(self, email: str, key: pgp.PrivateKey | None = None) -> str:
        return self.code("AUTH", email=email, signature=auth_signature(self.greeting, email, key))

    def send(self, packet: dict[str, Any]) -> dict[str, Any]:
        return self.request("SEND", packet=packet)
