"""Delivery in its own process (SPEC §8.5; docs/federation.md "Where delivery runs"): leased
claims survive a delivery process killed mid-delivery, several delivery processes share one
PostgreSQL queue, relaying works with the home server on PostgreSQL, and the delivery process
ends with its server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from federation_helpers import (
    ALICE,
    BOB,
    clients,
    inbox,
    link_all,
    relay_server,
    wait_for,
)

from mmtp_proto.backends import open_store
from mmtp_proto.delivery_process import DeliveryProcess
from mmtp_proto.server import Server

postgresql = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
# Disconnected at teardown, also when the test fails: a client left open there would fail a
# later test with its TLS socket's ResourceWarning.
client = pytest.fixture(clients)


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port that takes TCP connections into its backlog and never answers: a delivery to
    it hangs in the TLS handshake."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def queue_rows(server: Server) -> list[dict[str, Any]]:
    store: Any = open_store(server.config.database, Path(server.config.data_dir), fsync=False)
    try:
        return list(store.queue_list())
    finally:
        store.close()


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_job_held_by_a_killed_delivery_process_is_delivered_once_by_the_next(
    tmp_path, black_hole, client
):
    a = relay_server(tmp_path, "a.test", relay_lease_seconds=2)
    b = relay_server(tmp_path, "b.test")
    link_all([a, b])
    assert a.federation is not None and b.tls_address is not None
    # a.test's first delivery process will hang on this route, holding the job's lease.
    a.federation.set_route("b.test", "127.0.0.1", black_hole)
    a.start()
    b.start()
    try:
        bob = client(b, BOB)
        alice = client(a, ALICE)
        sent = alice.send_mail(ALICE, BOB, "Leased", "Claimed, then killed.", encrypt=False)
        assert sent.queued
        [job] = wait_for(lambda: [r for r in queue_rows(a) if r["leasedBy"]])
        assert a.delivery is not None and a.delivery.pid is not None
        first = a.delivery.pid
        assert job["leasedBy"].split(":")[1] == str(first)
        # The next delivery process is started with the real route.
        a.federation.set_route("b.test", *b.tls_address)
        os.kill(first, signal.SIGKILL)
        messages = wait_for(lambda: inbox(bob, BOB), timeout=30)
        assert [m["meta"]["messageId"] for m in messages] == [sent.message_id]
        assert a.delivery.restarts == 1 and a.delivery.pid != first
        [row] = wait_for(lambda: [r for r in queue_rows(a) if r["state"] == "done"])
        assert (row["attempts"], row["leasedBy"]) == (1, None)
        time.sleep(1.0)
        assert len(inbox(bob, BOB)) == 1
    finally:
        a.stop()
        b.stop()


@postgresql
def test_relay_from_a_home_server_on_postgresql(tmp_path, database, client):
    a = relay_server(tmp_path, "a.test", database=database)
    b = relay_server(tmp_path, "b.test")
    link_all([a, b])
    a.start()
    b.start()
    try:
        bob = client(b, BOB)
        alice = client(a, ALICE)
        sent = alice.send_mail(ALICE, BOB, "Over PostgreSQL", "Queued in PostgreSQL.")
        assert sent.queued
        messages = wait_for(lambda: inbox(bob, BOB), timeout=30)
        assert [m["meta"]["messageId"] for m in messages] == [sent.message_id]
        wait_for(lambda: [r["state"] for r in queue_rows(a)] == ["done"])
    finally:
        a.stop()
        b.stop()


@postgresql
def test_two_delivery_processes_over_one_postgresql_deliver_each_message_once(
    tmp_path, database, client
):
    a = relay_server(tmp_path, "a.test", database=database)
    b = relay_server(tmp_path, "b.test")
    link_all([a, b])
    assert a.federation is not None
    routes = dict(a.federation.resolver.routes)
    second = DeliveryProcess(a.config, lambda: routes)
    second.start()
    a.start()
    b.start()
    count = 24
    try:
        bob = client(b, BOB)
        alice = client(a, ALICE)
        ids = [
            alice.send_mail(ALICE, BOB, f"n{n}", "Either may take it.", encrypt=False).message_id
            for n in range(count)
        ]
        messages = wait_for(lambda: len(inbox(bob, BOB)) >= count and inbox(bob, BOB), 60)
        assert sorted(m["meta"]["messageId"] for m in messages) == sorted(ids)
        rows = wait_for(lambda: all(r["state"] == "done" for r in queue_rows(a)) and queue_rows(a))
        # Each job's outcome was written once: by the one process whose claim stood.
        assert [(r["state"], r["attempts"]) for r in rows] == [("done", 1)] * count
        time.sleep(1.0)
        assert len(inbox(bob, BOB)) == count
    finally:
        second.stop()
        a.stop()
        b.stop()


CHILD_OF_A_DYING_SERVER = """
import sys, time
from pathlib import Path
from mmtp_proto.config import ServerConfig
from mmtp_proto.delivery_process import DeliveryProcess

config = ServerConfig(data_dir=Path(sys.argv[1]), domains=["a.test"], relay=True,
                      relay_tls_verify="tofu").validate()
process = DeliveryProcess(config, dict)
process.start()
print(process.pid, flush=True)
time.sleep(600)
"""


def test_the_delivery_process_ends_when_its_server_is_killed(tmp_path):
    parent = subprocess.Popen(
        [sys.executable, "-c", CHILD_OF_A_DYING_SERVER, str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert alive(child)
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
    wait_for(lambda: not alive(child), timeout=20)


def test_sigterm_stops_the_delivery_process_and_the_server_stops_it(tmp_path):
    a = relay_server(tmp_path, "a.test")
    a.start()
    assert a.delivery is not None
    pid = wait_for(lambda: a.delivery is not None and a.delivery.pid)
    assert alive(pid)
    a.stop()
    assert not alive(pid)
    # It stopped on its own (SIGTERM, pipe closed), not killed.
    assert a.delivery.exitcode == 0
