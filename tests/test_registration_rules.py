"""SPEC revision 2 §5 registration rules: policy in the greeting, invite tokens, reserved and
held names, the per-IP limit on new registrations, and accounts the operator disabled.

The revision-1 server let anyone claim postmaster, any number of names from one address,
and had neither invites nor disabled accounts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import ALICE, BOB, CAROL, DAVE, key_for, make_packet
from rules_harness import Server, use_database

from mmtp_proto.actions import Greeting
from mmtp_proto.registration import invite_digest, new_invite_token

# The tests on harness servers run on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_backends


@pytest.fixture
def make_server(
    tmp_path: Path, database: str | None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Server]]:
    use_database(monkeypatch, database)
    made: list[Server] = []

    def make(**overrides) -> Server:
        srv = Server(tmp_path / f"data{len(made)}", now=time.time(), **overrides)
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.close()


def invite(srv: Server, email: str) -> str:
    token = new_invite_token()
    now = int(srv.clock())
    srv.store.add_invite(invite_digest(token), email, now=now, expires_at=now + 3600)
    srv.store.commit()
    return token


@pytest.mark.parametrize("policy", ["open", "invite", "closed"])
def test_the_greeting_names_the_registration_policy(make_server, policy):
    conn = make_server(registration=policy).connect()
    assert conn.greeting["features"]["registration"] == policy
    assert Greeting.from_response(conn.greeting).features.registration == policy


def test_reserved_names_are_never_open(make_server):
    srv = make_server(reserved_names=["Billing"])
    srv.store.add_reserved_name("sales")
    srv.store.commit()
    conn = srv.connect()
    for name in ("postmaster", "abuse+reports", "mailer-daemon", "billing", "sales+eu"):
        assert conn.register(f"({name})%(localhost)") == "FORBIDDEN", name
    assert conn.register("(postmasters)%(localhost)") == "OK"
    # The operator can still hand one out.
    token = invite(srv, "(postmaster)%(localhost)")
    assert conn.register("(postmaster)%(localhost)", invite=token) == "OK"


def test_invite_policy_needs_a_token_for_that_address_used_once(make_server):
    srv = make_server(registration="invite")
    conn = srv.connect()
    assert conn.register(BOB) == "FORBIDDEN"
    token = invite(srv, BOB)
    assert conn.register(CAROL, invite=token) == "FORBIDDEN"  # made for bob
    assert conn.register(BOB, invite="not-a-token") == "FORBIDDEN"
    assert conn.register(BOB, invite=token) == "OK"
    assert srv.store.list_invites(int(srv.clock())) == []  # spent with the registration
    assert srv.connect().code("REQUEST_PUBLIC_KEY", email=BOB) == "OK"
    # Spent: it opens nothing a second time.
    srv.store.delete_account(BOB, hold_until=0)
    srv.store.commit()
    assert conn.register(BOB, invite=token) == "FORBIDDEN"


def test_closed_policy_takes_only_invites(make_server):
    srv = make_server(registration="closed")
    conn = srv.connect()
    assert conn.register(BOB) == "FORBIDDEN"
    assert conn.register(BOB, invite=invite(srv, BOB)) == "OK"


def test_a_wrong_invite_is_forbidden_even_when_registration_is_open(make_server):
    conn = make_server().connect()
    assert conn.register(BOB, invite="x" * 24) == "FORBIDDEN"
    assert conn.register(BOB) == "OK"


def test_a_deleted_accounts_name_is_held_until_released(make_server):
    srv = make_server()
    conn = srv.connect()
    assert conn.register(BOB) == "OK"
    srv.store.delete_account(BOB, hold_until=int(srv.clock()) + 30 * 86400)
    srv.store.commit()
    assert conn.register(BOB) == "FORBIDDEN"
    srv.clock.now += 30 * 86400 + 1
    assert conn.register(BOB) == "OK"
    srv.store.delete_account(BOB, hold_until=int(srv.clock()) + 30 * 86400)
    srv.store.release_name(BOB)
    srv.store.commit()
    assert conn.register(BOB) == "OK"


def test_new_registrations_are_limited_per_source_address(make_server):
    srv = make_server()
    conn = srv.connect(peer="198.51.100.1")
    names = [f"(user{n})%(localhost)" for n in range(11)]
    for email in names[:10]:
        assert conn.register(email) == "OK"
    assert conn.register(names[10]) == "RATE_LIMITED"
    # Re-registering a registered key is not a new registration; neighbours are unaffected.
    assert conn.register(names[0]) == "OK"
    assert srv.connect(peer="198.51.100.2").register(names[10]) == "OK"
    assert conn.register(BOB) == "RATE_LIMITED"
    srv.clock.now += 3601
    assert conn.register(BOB) == "OK"


def test_a_disabled_account_cannot_authenticate_receive_or_be_sent_to(make_server):
    srv = make_server()
    owner = srv.connect()
    for email in (ALICE, BOB):
        assert owner.register(email) == "OK"
    assert owner.auth(BOB) == "OK"
    srv.store.set_account(BOB, disabled=True)
    srv.store.commit()
    assert owner.code("CHECK", email=BOB) == "AUTH_REQUIRED"
    conn = srv.connect()
    assert conn.auth(BOB) == "FORBIDDEN"
    assert conn.code("SEND", packet=make_packet(DAVE, BOB)) == "UNKNOWN_RECIPIENT"
    assert conn.code("REQUEST_PUBLIC_KEY", email=BOB) == "KEY_NOT_FOUND"
    # Its key no longer vouches for what it signs either.
    signed = make_packet(BOB, ALICE, sign=True)
    assert conn.code("SEND", packet=signed) == "FORBIDDEN"
    assert conn.register(BOB) == "FORBIDDEN"
    srv.store.set_account(BOB, disabled=False)
    srv.store.commit()
    assert conn.auth(BOB) == "OK"
    assert key_for(BOB)  # the same key works again


def test_the_policy_comes_from_the_config_file_or_the_flag(tmp_path):
    from mmtp_proto.config import load_config
    from mmtp_proto.errors import LocalError
    from mmtp_proto.server_cli import build_config, build_parser

    config = tmp_path / "server.toml"
    config.write_text('[server]\nregistration = "closed"\nreserved_names = ["Billing"]\n')
    loaded = load_config(config).validate()
    assert (loaded.registration, loaded.reserved_names) == ("closed", ["billing"])
    args = build_parser().parse_args(["--config", str(config), "--registration", "invite"])
    assert build_config(args).registration == "invite"
    config.write_text('[server]\nregistration = "sometimes"\n')
    with pytest.raises(LocalError, match="registration must be one of open, invite, closed"):
        load_config(config).validate()
