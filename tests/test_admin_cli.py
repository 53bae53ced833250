"""`mmtp-admin` (SPEC §11) against a running server's store, on each backend (SQLite in the
data directory, or the PostgreSQL database of `--database` / the config's `database`): every
change takes effect at the server's next request, output is text or JSON, and a refusal is
one sentence with a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    Wire,
    as_sender,
    error_code,
    key_for,
    make_packet,
    registered,
)

from mmtp_proto import admin_cli, pgp

# Every test that starts a server runs once per backend (tests/conftest.py).
pytestmark = [pytest.mark.secure, pytest.mark.both_backends]


@dataclass(frozen=True)
class Target:
    """Where mmtp-admin finds a server's store, as its options say it."""

    data_dir: Path
    database: str | None = None

    def argv(self) -> list[str]:
        where = ["--data-dir", str(self.data_dir)]
        return where + (["--database", self.database] if self.database else [])


def admin(capsys, target: Target, *argv: str) -> tuple[int, Any, str]:
    """Run mmtp-admin with --json; (exit status, parsed stdout or None, stderr)."""
    status = admin_cli.main([*target.argv(), "--json", *argv])
    out, err = capsys.readouterr()
    return status, json.loads(out) if status == 0 else out, err


def ok(capsys, target: Target, *argv: str) -> Any:
    status, result, err = admin(capsys, target, *argv)
    assert status == 0, err
    return result


def refused(capsys, target: Target, *argv: str) -> str:
    status, out, err = admin(capsys, target, *argv)
    assert status == 1 and out == ""
    assert err.startswith("mmtp-admin: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


@pytest.fixture
def running(start_server, tmp_path, database):
    """A running server, and where mmtp-admin finds its store."""
    data_dir = tmp_path / "server"
    return start_server(data_dir=data_dir), Target(data_dir, database)


def test_accounts_list_shows_keys_and_mail(running, capsys):
    server, target = running
    registered(server, ALICE, BOB)
    with as_sender(Wire(server)) as wire:
        assert wire.send(make_packet(DAVE, BOB))["status"] == "OK"
    result = ok(capsys, target, "accounts", "list")
    rows = {a["email"]: a for a in result["accounts"]}
    assert rows[BOB]["messages"] == 1 and rows[BOB]["bytes"] > 0
    assert rows[ALICE]["fingerprint"] == key_for(ALICE).public.fingerprint
    assert admin_cli.main([*target.argv(), "accounts", "list"]) == 0
    text = capsys.readouterr().out
    assert f"{BOB}  active  1 messages" in text


def test_disable_takes_effect_on_the_running_server_at_once(running, capsys):
    server, target = running
    registered(server, ALICE)
    with Wire(server) as wire:
        assert wire.auth(ALICE)["status"] == "OK"  # the server has alice's key cached now
        ok(capsys, target, "accounts", "disable", ALICE)
        assert wire.error("CHECK", {"email": ALICE}) == "AUTH_REQUIRED"
        assert error_code(wire.auth(ALICE)) == "FORBIDDEN"
        assert wire.error("SEND", {"packet": make_packet(DAVE, ALICE)}) == "UNKNOWN_RECIPIENT"
        ok(capsys, target, "accounts", "enable", ALICE)
        assert wire.auth(ALICE)["status"] == "OK"


def test_quota_set_applies_to_the_next_send(running, capsys):
    server, target = running
    registered(server, BOB)
    with as_sender(Wire(server)) as wire:
        assert wire.send(make_packet(DAVE, BOB))["status"] == "OK"
        shown = ok(capsys, target, "quota", "set", BOB, "--messages", "1")
        assert shown["maxMessages"] == 1 and shown["messages"] == 1
        assert wire.error("SEND", {"packet": make_packet(DAVE, BOB)}) == "MAILBOX_FULL"
        ok(capsys, target, "quota", "set", BOB, "--messages", "default", "--bytes", "1k")
        assert wire.error("SEND", {"packet": make_packet(DAVE, BOB)}) == "MAILBOX_FULL"
        shown = ok(capsys, target, "quota", "show", BOB)
        assert (shown["maxMessages"], shown["maxBytes"]) == (None, 1024)
        ok(capsys, target, "quota", "set", BOB, "--bytes", "default")
        assert wire.send(make_packet(DAVE, BOB))["status"] == "OK"
    everyone = ok(capsys, target, "quota", "show")
    assert everyone["defaults"]["maxBytes"] == 1024**3


def test_an_invite_opens_an_invite_only_server(start_server, tmp_path, database, capsys):
    target = Target(tmp_path / "invite", database)
    server = start_server(data_dir=target.data_dir, registration="invite")
    with Wire(server) as wire:
        assert error_code(wire.register(BOB)) == "FORBIDDEN"
        token = ok(capsys, target, "accounts", "invite", BOB)["invite"]
        pending = ok(capsys, target, "accounts", "list")["invites"]
        assert [i["email"] for i in pending] == [BOB]
        armored = key_for(BOB).public.armored
        answer = wire.request("REGISTER_KEY", {"email": BOB, "publicKey": armored, "invite": token})
        assert answer["status"] == "OK", answer
    assert ok(capsys, target, "accounts", "list")["invites"] == []
    assert "already registered" in refused(capsys, target, "accounts", "invite", BOB)
    # The plain-text form prints the token alone on its last line, for scripts.
    assert admin_cli.main([*target.argv(), "accounts", "invite", ALICE]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()[-1]) == 24


def test_delete_holds_the_name_until_released(running, capsys):
    server, target = running
    registered(server, BOB)
    with as_sender(Wire(server)) as wire:
        assert wire.send(make_packet(DAVE, BOB))["status"] == "OK"
        result = ok(capsys, target, "accounts", "delete", BOB)
        assert result["deletedMessages"] == 1
        assert wire.error("REQUEST_PUBLIC_KEY", {"email": BOB}) == "KEY_NOT_FOUND"
        assert error_code(wire.register(BOB)) == "FORBIDDEN"
        held = ok(capsys, target, "accounts", "list")["held"]
        assert [h["email"] for h in held] == [BOB]
        ok(capsys, target, "accounts", "release", BOB)
        assert wire.register(BOB)["status"] == "OK"
        assert wire.auth(BOB)["status"] == "OK"
        assert wire.ok("CHECK", {"email": BOB})["count"] == 0


def test_add_and_reset_key(running, capsys, tmp_path):
    server, target = running
    postmaster = "(postmaster)%(localhost)"
    key_file = tmp_path / "postmaster.asc"
    key_file.write_text(key_for(postmaster).public.armored)
    with Wire(server) as wire:
        assert error_code(wire.register(postmaster)) == "FORBIDDEN"
        ok(capsys, target, "accounts", "add", postmaster, "--key", str(key_file))
        assert wire.auth(postmaster)["status"] == "OK"
    registered(server, ALICE)
    new_key = pgp.generate_key(ALICE, "Alice", algorithm="ed25519")
    new_file = tmp_path / "alice-new.asc"
    new_file.write_text(new_key.public.armored)
    with Wire(server) as wire:
        assert wire.auth(ALICE)["status"] == "OK"
        result = ok(capsys, target, "accounts", "reset-key", ALICE, "--key", str(new_file))
        assert result["fingerprint"] == new_key.public.fingerprint
        # The connection proved the old key: it is no longer alice.
        assert wire.error("CHECK", {"email": ALICE}) == "AUTH_REQUIRED"
        assert error_code(wire.auth(ALICE)) == "AUTH_FAILED"
        assert wire.auth(ALICE, new_key)["status"] == "OK"
    wrong = refused(capsys, target, "accounts", "reset-key", ALICE, "--key", str(key_file))
    assert "cannot be used" in wrong


def test_reserved_names(running, capsys):
    server, target = running
    result = ok(capsys, target, "reserved", "add", "Sales")
    assert "sales" in result["added"] and "postmaster" in result["builtin"]
    with Wire(server) as wire:
        assert error_code(wire.register("(sales+eu)%(localhost)")) == "FORBIDDEN"
        ok(capsys, target, "reserved", "remove", "sales")
        assert wire.register("(sales+eu)%(localhost)")["status"] == "OK"
    assert "by the protocol" in refused(capsys, target, "reserved", "remove", "postmaster")


def test_domain_key_rotation(running, capsys):
    _, target = running
    first = ok(capsys, target, "domain-key", "list")
    rotated = ok(capsys, target, "domain-key", "rotate")
    assert rotated["active"] != first["active"]
    assert {k["id"] for k in rotated["keys"]} == {first["active"], rotated["active"]}


def test_errors_are_one_sentence(running, capsys, tmp_path):
    _, target = running
    assert "no account" in refused(capsys, target, "accounts", "disable", BOB)
    assert "not held" in refused(capsys, target, "accounts", "release", BOB)
    assert "not of the form" in refused(capsys, target, "accounts", "invite", "bob")
    nowhere = Target(tmp_path / "nowhere")
    assert "no server database" in refused(capsys, nowhere, "accounts", "list")
    registered(running[0], BOB)
    assert "not a size" in refused(capsys, target, "quota", "set", BOB, "--bytes", "lots")


def test_the_console_script_runs(running, tmp_path):
    server, target = running
    registered(server, BOB)
    config = tmp_path / "server.toml"
    # The config file names the store, as the server's does: the data dir, and the database
    # when there is one.
    database = f'database = "{target.database}"\n' if target.database else ""
    config.write_text(
        f'[server]\ndata_dir = "{target.data_dir}"\ndomains = ["localhost"]\n{database}'
    )
    script = Path(sys.executable).with_name("mmtp-admin")
    done = subprocess.run(
        [str(script), "--config", str(config), "--json", "accounts", "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert [a["email"] for a in json.loads(done.stdout)["accounts"]] == [BOB]
    done = subprocess.run(
        [str(script), "--config", str(config), "accounts", "invite", "(x)%(example.com)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("mmtp-admin: error: (x)%(example.com) is not on a domain")


def test_only_the_operator_replaces_a_revoked_key(running, capsys, tmp_path):
    import warnings
    from datetime import UTC, datetime, timedelta

    import pgpy
    from pgpy.constants import RevocationReason

    server, target = running
    erin = "(erin)%(localhost)"
    old = pgp.generate_key(erin, "Erin", algorithm="ed25519")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        key, _ = pgpy.PGPKey.from_blob(old.armored)
        # A second later than the key's self-signatures: renewal needs a newer one.
        later = datetime.now(UTC) + timedelta(seconds=2)
        key |= key.revoke(key, reason=RevocationReason.Compromised, created=later)
    new = pgp.generate_key(erin, "Erin", algorithm="ed25519")
    with Wire(server) as wire:
        assert wire.register(erin, old)["status"] == "OK"
        revoked = wire.request("REGISTER_KEY", {"email": erin, "publicKey": str(key.pubkey)})
        assert revoked["status"] == "OK" and "revoked" in revoked["message"], revoked
        assert error_code(wire.auth(erin, old)) == "AUTH_FAILED"
        assert error_code(wire.register(erin, new)) == "KEY_EXISTS"
    key_file = tmp_path / "erin-new.asc"
    key_file.write_text(new.public.armored)
    ok(capsys, target, "accounts", "reset-key", erin, "--key", str(key_file))
    with Wire(server) as wire:
        assert wire.auth(erin, new)["status"] == "OK"


def test_an_unreachable_database_is_one_sentence(capsys, tmp_path):
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    url = "postgresql://mmtp:secret@127.0.0.1:1/mmtp"
    err = refused(capsys, Target(tmp_path, url), "accounts", "list")
    assert "cannot reach the database postgresql://mmtp:***@127.0.0.1:1/mmtp" in err
    assert "secret" not in err
    assert "must be a postgresql:// URL" in refused(
        capsys, Target(tmp_path, "mysql://x@y/z"), "accounts", "list"
    )


def test_a_database_without_a_server_is_refused_and_left_empty(capsys, tmp_path, postgres_url):
    import psycopg

    err = refused(capsys, Target(tmp_path, postgres_url), "accounts", "list")
    assert "no server database" in err and "no mmtp tables" in err
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT to_regclass('mmtp_meta')").fetchone() == (None,)


def test_every_server_on_the_store_sees_a_change_at_once(start_server, tmp_path, database, capsys):
    """Two servers over one store, with sessions and cached keys from before the change: what
    mmtp-admin changes, both act on at their next request. On PostgreSQL they have data dirs
    of their own, as two hosts behind a balancer, and mmtp-admin is told only the database;
    on SQLite they share the data dir, as the processes of `--workers` do."""
    if database:
        fronts = [start_server(data_dir=tmp_path / f"front{n}") for n in (1, 2)]
        target = Target(tmp_path / "elsewhere", database)
    else:
        fronts = [start_server(data_dir=tmp_path / "shared") for _ in (1, 2)]
        target = Target(tmp_path / "shared")
    wires: list[Wire] = []
    try:
        registered(fronts[0], ALICE, BOB, CAROL)
        wires = [Wire(front) for front in fronts] + [Wire(front) for front in fronts]
        pairs = list(zip(wires[:2], wires[2:], strict=True))  # (alice's, carol's) per front
        for wire, sender in pairs:
            assert wire.auth(ALICE)["status"] == "OK"
            # Carol's session reads her key, then bob's: both are cached on each front end.
            assert sender.auth(CAROL)["status"] == "OK"
            assert sender.send(make_packet(CAROL, BOB))["status"] == "OK"
        ok(capsys, target, "accounts", "disable", ALICE)
        ok(capsys, target, "accounts", "delete", BOB)
        for wire, sender in pairs:
            assert wire.error("CHECK", {"email": ALICE}) == "AUTH_REQUIRED"
            assert error_code(wire.auth(ALICE)) == "FORBIDDEN"
            assert sender.error("SEND", {"packet": make_packet(CAROL, BOB)}) == (
                "UNKNOWN_RECIPIENT"
            )
            assert wire.error("REQUEST_PUBLIC_KEY", {"email": BOB}) == "KEY_NOT_FOUND"
            assert error_code(wire.register(BOB)) == "FORBIDDEN"  # the name is held
        ok(capsys, target, "accounts", "enable", ALICE)
        for wire in wires:
            assert wire.auth(ALICE)["status"] == "OK"
    finally:
        for wire in wires:
            wire.close()
    assert not (tmp_path / "elsewhere").exists()
