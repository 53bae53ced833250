"""The receiving side of relaying does no OpenPGP work on its loop thread (issue 8), over real
sockets: a relayed SEND's signature and the sender's key fetched from its domain are checked
by the worker pool. A check that cannot finish, or a key that is no good, stores the message
with signatureVerified false (SPEC §8.3) while every other connection is served as usual.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bystander import under_attack
from federation_helpers import ALICE, BOB, link_all, relay_server
from helpers import Wire, error_code, key_for, make_packet

from mmtp_proto.domain_keys import cert_hash
from mmtp_proto.server import Server
from mmtp_proto.store import Store

ANN = "(ann)%(a.test)"


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """a.test (the senders' home) and b.test (receiving: one worker, a 5 s job deadline)."""
    a = relay_server(tmp_path, "a.test")
    b = relay_server(tmp_path, "b.test", pgp_workers=1, job_deadline_seconds=5.0)
    link_all([a, b])
    a.start()
    b.start()
    with Wire(a) as wire:
        for email in (ALICE, ANN):
            assert wire.register(email)["status"] == "OK"
    with Wire(b) as wire:
        assert wire.register(BOB)["status"] == "OK"
    yield a, b
    for server in (a, b):
        with contextlib.suppress(Exception):
            server.stop()


def relay_as_a(a: Server, wire: Wire) -> None:
    """Domain-authenticate `wire` (a connection to b.test) as a.test, as a's relay would."""
    assert a.federation is not None
    der = wire.sock.getpeercert(binary_form=True)  # type: ignore[attr-defined]
    auth = a.federation.keyring.sign_auth(
        "b.test", wire.greeting["nonce"], "a.test", cert_hash(der)
    )
    assert wire.request("DOMAIN_AUTH", auth)["status"] == "OK"


def stored_verdicts(b: Server) -> dict[str, bool]:
    with Wire(b) as reader:
        reader.auth(BOB, key_for(BOB))
        messages = reader.receive(BOB)["messages"]
    return {m["meta"]["messageId"]: m["meta"]["signatureVerified"] for m in messages}


def test_a_relayed_signature_is_checked_by_a_worker_never_the_loop(pair):
    a, b = pair
    # b's only worker is frozen: a check on the loop thread would not notice and verify;
    # a check in the worker runs out of time, while the loop serves everyone else.
    assert b._pool is not None
    frozen = b._pool.pids()
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    signed = make_packet(ALICE, BOB, sign=True, body="checked elsewhere")

    def attack() -> list[dict[str, Any]]:
        with Wire(b) as relay:
            relay_as_a(a, relay)
            started = time.monotonic()
            answer = relay.send(signed)
            answer["seconds"] = time.monotonic() - started
            return [answer]

    (answer,), latencies = under_attack(b, "relayed", attack, email=BOB)
    # Not refused (SPEC §8.3): stored, unverified, once the deadline stopped the key check.
    assert answer["status"] == "OK" and answer["signatureVerified"] is False, answer
    assert answer["seconds"] >= 4.5
    assert len(latencies) >= 5  # the bystander went on meanwhile
    assert b._pool.pids() and not set(b._pool.pids()) & set(frozen)
    # With a working pool, another sender's genuine signature verifies (key fetched from
    # a.test, judged by a worker, signature checked by a worker).
    genuine = make_packet(ANN, BOB, sign=True, body="verified")
    with Wire(b) as relay:
        relay_as_a(a, relay)
        again = relay.send(genuine)
        assert again["status"] == "OK" and again["signatureVerified"] is True, again
        # A bad signature by a known sender is stored unverified, not refused.
        forged = make_packet(ANN, BOB, sign_with=key_for(ALICE), body="forged")
        answer = relay.send(forged)
        assert answer["status"] == "OK" and answer["signatureVerified"] is False, answer
    verdicts = stored_verdicts(b)
    assert verdicts[signed["meta"]["messageId"]] is False
    assert verdicts[genuine["meta"]["messageId"]] is True
    assert verdicts[forged["meta"]["messageId"]] is False


def test_a_bad_key_served_by_the_sender_domain_stores_the_message_unverified(pair, tmp_path):
    a, b = pair
    # a.test serves, for ALICE, a key that names another address (written past REGISTER_KEY's
    # checks, as a hostile or broken home server could).
    store = Store(tmp_path / "a.test" / "mmtp.db", fsync=False)
    try:
        other = key_for("(mallory)%(a.test)").public
        store.put_key(ALICE, other.armored, other.fingerprint, int(time.time()))
        store.commit()
    finally:
        store.close()
    signed = make_packet(ALICE, BOB, sign_with=key_for("(mallory)%(a.test)"), body="bad key")

    def attack() -> list[dict[str, Any]]:
        with Wire(b) as relay:
            relay_as_a(a, relay)
            return [relay.send(signed)]

    (answer,), _ = under_attack(b, "relayed", attack, email=BOB)
    assert answer["status"] == "OK" and answer["signatureVerified"] is False, answer
    # The verdict on the key is cached: a client asking b for it is refused with a reason.
    with Wire(b) as client:
        answer = client.request("REQUEST_PUBLIC_KEY", {"email": ALICE})
        assert error_code(answer) == "KEY_INVALID" and "a.test serves" in str(answer)
    assert stored_verdicts(b)[signed["meta"]["messageId"]] is False
