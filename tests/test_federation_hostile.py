"""A hostile remote server (SPEC §8, §10, §11): what its answers may do to the server that
talks to it. Real servers on 127.0.0.1 with real TLS; the remote is `hostile_remote`."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from federation_helpers import relay_server
from helpers import Wire
from hostile_remote import HostileRemote, error

from mmtp_proto.server import Server

EVIL = "evil.test"
FORGED = "INTERNAL\n2026-12-01 00:00:00 INFO relay: forged line"


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Server]:
    server = relay_server(tmp_path, "a.test")
    server.start()
    yield server
    with contextlib.suppress(Exception):
        server.stop()


def routed(home: Server, remote: HostileRemote) -> None:
    assert home.federation is not None
    home.federation.set_route(remote.domain, *remote.address)


def test_a_remote_error_code_is_not_passed_on_raw_to_clients_or_logs(home, tmp_path, caplog):
    """A remote's `error.code` is as untrusted as its message: a newline in it must not forge
    log lines, nor reach a client (or a DSN) as a code no client knows, nor be unbounded."""
    code = FORGED + "X" * 100_000
    remote = HostileRemote(tmp_path, EVIL, lambda _request: error(code, "no\r\nsuch\nkey"))
    try:
        routed(home, remote)
        caplog.set_level(logging.INFO, logger="mmtp.relay")
        with Wire(home) as wire:
            answer = wire.request("REQUEST_PUBLIC_KEY", {"email": f"(bob)%({EVIL})"})
        assert answer["status"] == "ERROR"
        said = answer["error"]["code"] + answer["error"]["message"]
        assert "\n" not in said and "\r" not in said
        assert len(answer["error"]["message"]) < 1000
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", answer["error"]["code"])
        for record in caplog.records:
            line = record.getMessage()
            assert "\n" not in line and "\r" not in line, line
            assert len(line) < 2000
    finally:
        remote.close()
