"""Federation refusals (SPEC §3, §8.3, §8.4): no open relay, no forged domain, no relaying
through a domain-authenticated connection, no remote sender without domain auth."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from federation_helpers import ALICE, BOB, CAROL, link_all, relay_server, wait_for
from helpers import Wire, error_code, key_for, make_packet

from mmtp_proto.domain_keys import DomainKeyring, cert_hash
from mmtp_proto.server import Server


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


def domain_authed(wire: Wire, keyring: DomainKeyring, domain: str, receiver: str) -> dict:
    der = wire.sock.getpeercert(binary_form=True)  # type: ignore[attr-defined]
    data = keyring.sign_auth(receiver, wire.greeting["nonce"], domain, cert_hash(der))
    return wire.request("DOMAIN_AUTH", data)


def test_the_greeting_says_relay_and_lists_the_federation_actions(servers):
    a = servers[0]
    with Wire(a) as wire:
        assert wire.greeting["features"]["relay"] is True
        assert {"POLICY", "DOMAIN_KEY", "DOMAIN_AUTH"} <= set(wire.greeting["actions"])
        keys = wire.ok("DOMAIN_KEY", {"domain": "a.test"})
        assert keys["keys"][0]["alg"] == "ed25519" and keys["ttl"] >= 60
        assert wire.error("DOMAIN_KEY", {"domain": "b.test"}) == "NOT_LOCAL"
        policy = wire.ok("POLICY", {"domain": "a.test"})
        assert policy["local"] is True and policy["difficulty"] == a.config.difficulty
        remote = wire.ok("POLICY", {"domain": "b.test"})
        assert remote["local"] is False and remote["difficulty"] == servers[1].config.difficulty


def test_a_forged_domain_auth_is_refused(servers, tmp_path):
    _a, b, _c = servers
    forger = DomainKeyring.load_or_create(tmp_path / "forger")
    with Wire(b) as wire:
        # Signed by a key a.test does not publish.
        assert error_code(domain_authed(wire, forger, "a.test", "b.test")) == "AUTH_FAILED"
    with Wire(b) as wire:
        # b.test's own domain, or a signature for another receiver, never passes.
        assert error_code(domain_authed(wire, forger, "b.test", "b.test")) == "AUTH_FAILED"
    with Wire(b, tls=False) as wire:
        answer = wire.request("DOMAIN_AUTH", {"domain": "a.test", "keyId": "x", "signature": "y"})
        assert error_code(answer) == "TLS_REQUIRED"


def test_a_genuine_domain_auth_may_deliver_but_never_relay(servers):
    a, b, _c = servers
    assert a.federation is not None
    with Wire(b) as bob_side:
        bob_side.register(BOB)
    with Wire(b) as wire:
        assert domain_authed(wire, a.federation.keyring, "a.test", "b.test")["status"] == "OK"
        assert error_code(wire.request("DOMAIN_AUTH", {})) == "BAD_REQUEST"  # one per connection
        assert wire.send(make_packet(ALICE, BOB))["status"] == "OK"
        # Relaying onwards through a domain-authenticated connection: refused.
        assert error_code(wire.send(make_packet(ALICE, CAROL))) == "NOT_LOCAL"
        # A sender of another domain than the one authenticated: refused.
        assert error_code(wire.send(make_packet("(eve)%(c.test)", BOB))) == "FORBIDDEN"
        # Signed, but a.test has no key for its sender: stored, not verified.
        signed = make_packet(ALICE, BOB, sign=True, body="signed")
        answer = wire.send(signed)
        assert answer["status"] == "OK" and answer["signatureVerified"] is False
    with Wire(b) as reader:
        reader.auth(BOB, key_for(BOB))
        stored = {m["meta"]["messageId"]: m for m in reader.receive(BOB)["messages"]}
        assert stored[signed["meta"]["messageId"]]["meta"]["signatureVerified"] is False


def test_remote_keys_are_looked_up_at_the_home_server(servers):
    a, b, _c = servers
    with Wire(b) as wire:
        wire.register(BOB)
    with Wire(a) as wire:
        answer = wire.ok("REQUEST_PUBLIC_KEY", {"email": BOB})
        assert answer["remote"] is True and answer["email"] == BOB
        assert answer["fingerprint"] == key_for(BOB).public.fingerprint
        assert wire.error("REQUEST_PUBLIC_KEY", {"email": "(nobody)%(b.test)"}) == "KEY_NOT_FOUND"


def test_a_remote_sender_without_domain_auth_is_refused(servers):
    _a, b, _c = servers
    with Wire(b) as wire:
        wire.register(BOB)
        assert error_code(wire.send(make_packet(ALICE, BOB, sign=True))) == "FORBIDDEN"


def test_no_open_relay(servers):
    a = servers[0]
    with Wire(a) as wire:
        wire.register(ALICE)
        # Unauthenticated and unsigned, from a local user: not relayed.
        assert error_code(wire.send(make_packet(ALICE, BOB))) == "FORBIDDEN"
        # A sender of another domain, to another domain: not relayed either.
        assert error_code(wire.send(make_packet("(eve)%(c.test)", BOB))) == "FORBIDDEN"
        # Signed by the sender's registered key: queued.
        answer = wire.send(make_packet(ALICE, BOB, sign=True))
        assert answer["status"] == "OK" and answer["queued"] is True
    with Wire(a) as wire:
        wire.auth(ALICE, key_for(ALICE))
        packet = make_packet(ALICE, BOB)
        first = wire.send(packet)
        assert first["status"] == "OK" and first["queued"] is True
        again = wire.send(packet)  # a retry after a lost OK
        assert again["status"] == "OK" and again["duplicate"] is True


def test_a_connection_waiting_for_a_fetch_never_stalls_the_others(tmp_path):
    # a.test listens but does not serve yet: b.test's fetch of its domain keys waits.
    a = relay_server(tmp_path, "a.test")
    b = relay_server(tmp_path, "b.test")
    link_all([a, b])
    b.start()
    assert a.federation is not None
    try:
        with Wire(b) as waiting, Wire(b) as other:
            der = waiting.sock.getpeercert(binary_form=True)  # type: ignore[attr-defined]
            auth = a.federation.keyring.sign_auth(
                "b.test", waiting.greeting["nonce"], "a.test", cert_hash(der)
            )
            first = waiting.send_request("DOMAIN_AUTH", auth)
            second = waiting.send_request("POLICY", {"domain": "b.test"})
            # Meanwhile another connection is answered at once.
            assert other.ok("POLICY", {"domain": "b.test"})["local"] is True
            assert other.ok("DOMAIN_KEY", {"domain": "b.test"})["keys"]
            a.start()
            answers = [waiting.read(), waiting.read()]
            assert [x["id"] for x in answers] == [first, second]
            assert [x["status"] for x in answers] == ["OK", "OK"]
    finally:
        a.stop()
        b.stop()


def test_a_server_that_does_not_relay_bounces_relayed_mail_at_once(tmp_path):
    a = relay_server(tmp_path, "a.test")
    b = relay_server(tmp_path, "b.test", relay=False)
    assert a.federation is not None and b.tls_address is not None
    a.federation.set_route("b.test", *b.tls_address)
    a.start()
    b.start()
    try:
        with Wire(b) as wire:
            assert wire.greeting["features"]["relay"] is False
            assert "DOMAIN_AUTH" not in wire.greeting["actions"]
            wire.register(BOB)
        with Wire(a) as wire:
            wire.register(ALICE)
            wire.auth(ALICE, key_for(ALICE))
            sent = wire.send(make_packet(ALICE, BOB))
            assert sent["queued"] is True

            def reports() -> list:
                got = wire.receive(ALICE)["messages"]
                return [m for m in got if m["meta"]["type"] == "DSN"]

            dsn = wait_for(reports)[0]["content"]["dsn"]
            assert (dsn["action"], dsn["code"]) == ("failed", "UNKNOWN_ACTION")
    finally:
        a.stop()
        b.stop()


def test_the_sender_rule_for_remote_senders_on_a_relaying_server(servers):
    a, b, _c = servers
    with Wire(b) as wire:
        wire.register(BOB)
    # Not domain-authenticated: a sender of another domain is refused, however it comes.
    with Wire(b) as wire:
        answer = wire.send(make_packet(ALICE, BOB))
        assert error_code(answer) == "FORBIDDEN"
        assert ALICE in answer["message"] and "domain-authenticated" in answer["message"]
        assert error_code(wire.send(make_packet(ALICE, BOB, sign=True))) == "FORBIDDEN"
        # The local half holds on a relaying server too: a local sender needs AUTH or a signature.
        assert error_code(wire.send(make_packet("(dave)%(b.test)", BOB))) == "FORBIDDEN"
        assert wire.auth(BOB, key_for(BOB))["status"] == "OK"  # a local user's AUTH: no help
        assert error_code(wire.send(make_packet(ALICE, BOB))) == "FORBIDDEN"
    # Domain-authenticated for a.test: a.test's senders only.
    with Wire(b) as wire:
        assert domain_authed(wire, a.federation.keyring, "a.test", "b.test")["status"] == "OK"
        answer = wire.send(make_packet("(eve)%(c.test)", BOB))
        assert error_code(answer) == "FORBIDDEN"
        assert "a.test" in answer["message"]
        assert wire.send(make_packet(ALICE, BOB))["status"] == "OK"
    with Wire(b) as reader:
        reader.auth(BOB, key_for(BOB))
        assert [m["sender"] for m in reader.receive(BOB)["messages"]] == [ALICE]
