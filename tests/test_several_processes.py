"""Two `mmtp-server` processes on their own ports over one PostgreSQL database: one mail
service. What one acknowledges the other serves, a stamp is spent once between them, a key
replaced through one ends AUTH with the old key through the other at once, and killing one
with SIGKILL while clients send loses nothing either acknowledged."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from load_tools import (
    RECIPIENT,
    SendLoad,
    ServerProcess,
    Wire,
    code_of,
    key_for,
    packet_for,
    receive_all,
    register,
    same_stamp_new_id,
)

from mmtp_proto import pgp

pytestmark = [pytest.mark.parametrize("backend", ["postgresql"], indirect=True)]

Spawn = Callable[[], ServerProcess]


@pytest.fixture
def spawn(tmp_path: Path, database: str | None) -> Iterator[Spawn]:
    assert database is not None
    started: list[ServerProcess] = []

    def spawn() -> ServerProcess:
        n = len(started)
        server = ServerProcess(
            tmp_path / f"data-{n}", tmp_path / f"logs-{n}", ["--database", database]
        )
        started.append(server.start())
        return server

    yield spawn
    for server in started:
        server.kill()


def test_mail_sent_through_one_process_is_read_through_the_other(spawn: Spawn) -> None:
    one, two = spawn(), spawn()
    register(one.plain)
    with Wire(two.plain) as wire:  # the key registered through one is known to two
        answer = wire.request("REQUEST_PUBLIC_KEY", {"email": RECIPIENT})
        assert answer["status"] == "OK", answer
    packets = [packet_for(body=f"message {i}") for i in range(5)]
    with Wire(one.plain) as wire:
        for packet in packets:
            assert wire.request("SEND", {"packet": packet})["status"] == "OK"
    got = receive_all(two.tls)
    assert [m["meta"]["messageId"] for m in got] == [p["meta"]["messageId"] for p in packets]
    # A duplicate is found whichever process it goes to.
    with Wire(two.plain) as wire:
        answer = wire.request("SEND", {"packet": packets[0]})
        assert answer["status"] == "OK" and answer["duplicate"] is True, answer


def test_a_stamp_sent_to_both_at_once_is_accepted_once(spawn: Spawn) -> None:
    one, two = spawn(), spawn()
    register(one.plain)
    rounds = 12
    originals = [packet_for() for _ in range(rounds)]
    replays = [same_stamp_new_id(p) for p in originals]
    answers: dict[str, list[dict[str, Any]]] = {"one": [], "two": []}
    barrier = threading.Barrier(2)

    def send(name: str, address: tuple[str, int], packets: list[dict[str, Any]]) -> None:
        with Wire(address) as wire:
            for packet in packets:
                barrier.wait(10)
                answers[name].append(wire.request("SEND", {"packet": packet}))

    threads = [
        threading.Thread(target=send, args=("one", one.plain, originals)),
        threading.Thread(target=send, args=("two", two.plain, replays)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for n in range(rounds):
        codes = sorted([code_of(answers["one"][n]), code_of(answers["two"][n])])
        assert codes == ["OK", "POW_REPLAYED"], (n, answers["one"][n], answers["two"][n])
    stored = receive_all(two.tls)
    assert len(stored) == rounds


def test_a_key_replaced_through_one_is_refused_for_auth_through_the_other(spawn: Spawn) -> None:
    one, two = spawn(), spawn()
    register(one.plain)
    old = key_for(RECIPIENT)
    new = pgp.generate_key(RECIPIENT, "bob", algorithm="ed25519")
    with Wire(two.tls, tls=True) as before, Wire(one.tls, tls=True) as owner:
        assert before.auth(RECIPIENT, old)["status"] == "OK"
        assert before.request("CHECK", {"email": RECIPIENT})["status"] == "OK"
        assert owner.auth(RECIPIENT, old)["status"] == "OK"
        answer = owner.request(
            "REGISTER_KEY", {"email": RECIPIENT, "publicKey": new.public.armored}
        )
        assert answer["status"] == "OK" and "replaced" in answer["message"], answer
        # At once, through the other process: the session on the old key is over...
        answer = before.request("CHECK", {"email": RECIPIENT})
        assert code_of(answer) == "AUTH_REQUIRED", answer
    with Wire(two.tls, tls=True) as fresh:
        # ...the old key no longer authenticates, and the new one does.
        assert code_of(fresh.auth(RECIPIENT, old)) == "AUTH_FAILED"
    with Wire(two.tls, tls=True) as fresh:
        assert fresh.auth(RECIPIENT, new)["status"] == "OK"


@pytest.mark.slow
def test_kill_9_of_one_process_loses_nothing_either_acknowledged(spawn: Spawn) -> None:
    one, two = spawn(), spawn()
    register(one.plain)
    with SendLoad(one.plain, 4, seed=1) as killed, SendLoad(two.plain, 4, seed=2) as survivor:
        time.sleep(1.0)
        one.kill()
        time.sleep(0.5)
    assert killed.acked and survivor.acked
    assert not survivor.refused, survivor.refused[:3]
    acked = {**killed.acked, **survivor.acked}
    stored = Counter(m["meta"]["messageId"] for m in receive_all(two.tls))
    missing = [m for m in acked if stored[m] != 1]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged messages lost"
    assert all(count == 1 for count in stored.values())
    # The killed process comes back on the same database with everything there.
    one.start()
    assert Counter(m["meta"]["messageId"] for m in receive_all(one.tls)) == stored
