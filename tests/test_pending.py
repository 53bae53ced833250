"""Answers that come later (`deferred.Pending`) against the sans-I/O server connection: one
mechanism for a worker job and for a fetch's future, and the order of pipelined answers.

The receiving server here is a `Protocol` with a real `Federation` and no loop: this test plays
the loop's part (jobs run in this thread; a finished future is seen through `Protocol.wake`).
The other domain's server, where there is one, is a real server on loopback.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from configs import make_config
from federation_helpers import ALICE, BOB, relay_server
from helpers import Wire, auth_signature, key_for, public_armored

from mmtp_proto.deferred import ERROR, Job, JobResult, Pending, future_result, run_inline
from mmtp_proto.federation import Federation
from mmtp_proto.framing import encode_frame
from mmtp_proto.protocol import Protocol
from mmtp_proto.server_connection import ServerConnection
from mmtp_proto.session import Outcome
from mmtp_proto.store import Store


class Receiver:
    """b.test without sockets: its protocol, store and federation; wakes are counted."""

    def __init__(self, data_dir: Path) -> None:
        config = make_config(
            data_dir, domains=["b.test"], relay=True, relay_tls_verify="tofu", log_level="INFO"
        )
        self.store = Store(data_dir / "mmtp.db", fsync=False)
        self.protocol = Protocol(config, self.store)
        self.federation = Federation(config, cert_path=None)
        self.protocol.federation = self.federation
        self.woken = threading.Event()
        self.protocol.wake = self.woken.set

    def connect(self) -> tuple[ServerConnection, dict[str, Any]]:
        conn = ServerConnection(self.protocol, peer="192.0.2.7", tls=True)
        conn.start()
        (greeting,) = frames(conn.data_to_send())
        return conn, greeting

    def settle(self, conn: ServerConnection, timeout: float = 20.0) -> list[str]:
        """Process until nothing is left or waiting; what each wait was for, in order."""
        waits: list[str] = []
        while True:
            conn.process(64, 1 << 30)
            job = conn.take_job()
            if job is not None:
                waits.append("job")
                conn.deliver(run_inline(job))
            elif conn.waiting:
                waits.append("future")
                assert self.woken.wait(timeout), "a finished fetch did not wake the loop"
                self.woken.clear()
            elif not conn.can_process:
                return waits

    def answers(self, conn: ServerConnection) -> list[dict[str, Any]]:
        self.protocol.commit()
        return frames(conn.data_to_send())

    def close(self) -> None:
        self.federation.close()
        self.store.close()


def frames(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.split(b"\n")[:-1]]


def request(action: str, request_id: Any, **data: Any) -> bytes:
    return encode_frame({"action": action, "id": request_id, "data": data})


def code(answer: dict[str, Any]) -> str:
    return "OK" if answer["status"] == "OK" else answer["error"]["code"]


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    made = Receiver(tmp_path / "b.test")
    conn, _ = made.connect()
    armored = public_armored(BOB)
    conn.receive_data(request("REGISTER_KEY", 1, email=BOB, publicKey=armored))
    made.settle(conn)
    assert [code(a) for a in made.answers(conn)] == ["OK"]
    yield made
    made.close()


@pytest.fixture
def home(tmp_path: Path, receiver: Receiver) -> Iterator[None]:
    """a.test, a real server holding ALICE's key, routed to from the receiver."""
    server = relay_server(tmp_path, "a.test")
    server.start()
    assert server.tls_address is not None
    receiver.federation.set_route("a.test", *server.tls_address)
    with Wire(server) as wire:
        assert wire.register(ALICE)["status"] == "OK"
    yield
    with contextlib.suppress(Exception):
        server.stop()


def test_pending_waits_for_exactly_one_of_a_job_or_a_future():
    job = Job(run_inline, ())
    future: Future[Any] = Future()
    then = lambda _result: Outcome({})  # noqa: E731
    assert Pending.on_job(job, then).job is job
    assert Pending.on_future(future, then).future is future
    with pytest.raises(ValueError):
        Pending(then)
    with pytest.raises(ValueError):
        Pending(then, job=job, future=future)


def test_a_future_is_handed_to_the_continuation_like_a_job_result():
    done: Future[Any] = Future()
    done.set_result(7)
    assert future_result(done) == JobResult(7)
    failed: Future[Any] = Future()
    failed.set_exception(KeyError("x"))
    result = future_result(failed)
    assert result.failure == ERROR and isinstance(result.exception, KeyError)
    cancelled: Future[Any] = Future()
    cancelled.cancel()
    assert future_result(cancelled).failure == ERROR


def test_a_request_waiting_for_a_fetch_holds_the_ones_after_it_and_nothing_else(receiver):
    # c.test's "server" accepts the connection and says nothing until the test lets it go.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        receiver.federation.set_route("c.test", *listener.getsockname()[:2])
        waiting, _ = receiver.connect()
        other, _ = receiver.connect()
        waiting.receive_data(
            request("POLICY", 1, domain="c.test") + request("CHECK", 2, email="(x)%(b.test)")
        )
        waiting.process(64, 1 << 30)
        accepted, _ = listener.accept()
        assert waiting.waiting and not waiting.can_process and waiting.take_job() is None
        assert waiting.pending_requests == 1
        # Another connection is answered meanwhile; the waiting one says nothing yet.
        other.receive_data(request("POLICY", 7, domain="b.test"))
        receiver.settle(other)
        assert [(a["id"], code(a)) for a in receiver.answers(other)] == [(7, "OK")]
        waiting.process(64, 1 << 30)
        assert receiver.answers(waiting) == []
        accepted.close()  # the fetch fails: its future is done, and the loop is woken
        assert receiver.woken.wait(20)
    assert waiting.can_process
    receiver.settle(waiting)
    answers = receiver.answers(waiting)
    assert [(a["id"], code(a)) for a in answers] == [
        (1, "REMOTE_UNAVAILABLE"),
        (2, "AUTH_REQUIRED"),
    ]


def test_pipelined_answers_keep_their_order_across_jobs_and_fetches(receiver, home):
    conn, greeting = receiver.connect()
    conn.receive_data(
        request("AUTH", 1, email=BOB, signature=auth_signature(greeting, BOB))
        + request("REQUEST_PUBLIC_KEY", 2, email=ALICE)
        + request("CHECK", 3, email=BOB)
        + request("REQUEST_PUBLIC_KEY", 4, email=ALICE)
    )
    # AUTH waits for a job; the remote key for a fetch, then for a worker to judge it; the
    # second lookup is answered from the cache.
    assert receiver.settle(conn) == ["job", "future", "job"]
    answers = receiver.answers(conn)
    assert [(a["id"], code(a)) for a in answers] == [(1, "OK"), (2, "OK"), (3, "OK"), (4, "OK")]
    assert answers[1]["remote"] is True
    assert answers[1]["fingerprint"] == key_for(ALICE).public.fingerprint
    assert answers[3]["fingerprint"] == answers[1]["fingerprint"]


def test_a_connection_closed_while_waiting_is_finished_only_once_answered(receiver, home):
    conn, _ = receiver.connect()
    conn.receive_data(request("REQUEST_PUBLIC_KEY", 1, email=ALICE))
    conn.receive_data(b"")  # the client closed its side after asking
    conn.process(64, 1 << 30)
    assert conn.closing and not conn.finished
    assert receiver.settle(conn) == ["future", "job"]
    (answer,) = receiver.answers(conn)
    assert code(answer) == "OK" and conn.finished
