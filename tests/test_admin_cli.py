"""`mmtp-admin` (SPEC §11) against a running server's data directory: every change takes effect
at the server's next request (it watches SQLite's data_version), output is text or JSON, and a
refusal is one sentence with a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    ALICE,
    BOB,
    DAVE,
    Wire,
    as_sender,
    error_code,
    key_for,
    make_packet,
    registered,
)

from mmtp_proto import admin_cli, pgp

pytestmark = pytest.mark.secure


def admin(capsys, data_dir: Path, *argv: str) -> tuple[int, Any, str]:
    """Run mmtp-admin with --json; (exit status, parsed stdout or None, stderr)."""
    status = admin_cli.main(["--data-dir", str(data_dir), "--json", *argv])
    out, err = capsys.readouterr()
    return status, json.loads(out) if status == 0 else out, err


def ok(capsys, data_dir: Path, *argv: str) -> Any:
    status, result, err = admin(capsys, data_dir, *argv)
    assert status == 0, err
    return result


def refused(capsys, data_dir: Path, *argv: str) -> str:
    status, out, err = admin(capsys, data_dir, *argv)
    assert status == 1 and out == ""
    assert err.startswith("mmtp-admin: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


@pytest.fixture
def running(start_server, tmp_path):
    data_dir = tmp_path / "server"
    return start_server(data_dir=data_dir), data_dir


def test_accounts_list_shows_keys_and_mail(running, capsys):
    server, data_dir = running
    registered(server, ALICE, BOB)
    with as_sender(Wire(server)) as wire:
        assert wire.send(make_packet(DAVE, BOB))["status"] == "OK"
    result = ok(capsys, data_dir, "accounts", "list")
    rows = {a["email"]: a for a in result["accounts"]}
    assert rows[BOB]["messages"] == 1 and rows[BOB]["bytes"] > 0
    assert rows[ALICE]["fingerprint"] == key_for(ALICE).public.fingerprint
    assert admin_cli.main(["--data-dir", str(data_dir), "accounts", "list"]) == 0
    text = capsys.readouterr().out
    assert f"{BOB}  active  1 messages" in text


def test_disable_takes_effect_on_the_running_server_at_once(running, capsys):
    server, data_dir = running
    registered(server, ALICE)
    with Wire(server) as wire:
        assert wire.auth(ALICE)["status"] == "OK"  # the server has alice's key cached now
        ok(capsys, data_dir, "accounts", "disable", ALICE)
        assert wire.error("CHECK", {"email": ALICE}) == "AUTH_REQUIRED"
        assert error_code(wire.auth(ALICE)) == "FORBIDDEN"
        assert wire.error("SEND", {"packet": make_packet(DAVE, ALICE)}) == "UNKNOWN_RECIPIENT"
        ok(capsys, data_dir, "accounts", "enable", ALICE)
        assert wire.auth(ALICE)["status"] == "OK"


def test_quota_set_applies_to_the_next_send(running, capsys):
    server, data_dir = running
    registered(server, BOB)
    with as_sender(Wire(server)) as wire:
        assert wire.send(make_packet(DAVE, BOB))["status"] == "OK"
        shown = ok(capsys, data_dir, "quota", "set", BOB, "--messages", "1")
        assert shown["maxMessages"] == 1 and shown["messages"] == 1
        assert wire.error("SEND", {"packet": make_packet(DAVE, BOB)}) == "MAILBOX_FULL"
        ok(capsys, data_dir, "quota", "set", BOB, "--messages", "default", "--bytes", "1k")
        assert wire.error("SEND", {"packet": make_packet(DAVE, BOB)}) == "MAILBOX_FULL"
        shown = ok(capsys, data_dir, "quota", "show", BOB)
        assert (shown["maxMessages"], shown["maxBytes"]) == (None, 1024)
        ok(capsys, data_dir, "quota", "set", BOB, "--bytes", "default")
        assert wire.send(make_packet(DAVE, BOB))["status"] == "OK"
    everyone = ok(capsys, data_dir, "quota", "show")
    assert everyone["defaults"]["maxBytes"] == 1024**3


def test_an_invite_opens_an_invite_only_server(start_server, tmp_path, capsys):
    data_dir = tmp_path / "invite"
    server = start_server(data_dir=data_dir, registration="invite")
    with Wire(server) as wire:
        assert error_code(wire.register(BOB)) == "FORBIDDEN"
        token = ok(capsys, data_dir, "accounts", "invite", BOB)["invite"]
        pending = ok(capsys, data_dir, "accounts", "list")["invites"]
        assert [i["email"] for i in pending] == [BOB]
        armored = key_for(BOB).public.armored
        answer = wire.request("REGISTER_KEY", {"email": BOB, "publicKey": armored, "invite": token})
        assert answer["status"] == "OK", answer
    assert ok(capsys, data_dir, "accounts", "list")["invites"] == []
    assert "already registered" in refused(capsys, data_dir, "accounts", "invite", BOB)
    # The plain-text form prints the token alone on its last line, for scripts.
    assert admin_cli.main(["--data-dir", str(data_dir), "accounts", "invite", ALICE]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()[-1]) == 24


def test_delete_holds_the_name_until_released(running, capsys):
    server, data_dir = running
    registered(server, BOB)
    with as_sender(Wire(server)) as wire:
        assert wire.send(make_packet(DAVE, BOB))["status"] == "OK"
        result = ok(capsys, data_dir, "accounts", "delete", BOB)
        assert result["deletedMessages"] == 1
        assert wire.error("REQUEST_PUBLIC_KEY", {"email": BOB}) == "KEY_NOT_FOUND"
        assert error_code(wire.register(BOB)) == "FORBIDDEN"
        held = ok(capsys, data_dir, "accounts", "list")["held"]
        assert [h["email"] for h in held] == [BOB]
        ok(capsys, data_dir, "accounts", "release", BOB)
        assert wire.register(BOB)["status"] == "OK"
        assert wire.auth(BOB)["status"] == "OK"
        assert wire.ok("CHECK", {"email": BOB})["count"] == 0


def test_add_and_reset_key(running, capsys, tmp_path):
    server, data_dir = running
    postmaster = "(postmaster)%(localhost)"
    key_file = tmp_path / "postmaster.asc"
    key_file.write_text(key_for(postmaster).public.armored)
    with Wire(server) as wire:
        assert error_code(wire.register(postmaster)) == "FORBIDDEN"
        ok(capsys, data_dir, "accounts", "add", postmaster, "--key", str(key_file))
        assert wire.auth(postmaster)["status"] == "OK"
    registered(server, ALICE)
    new_key = pgp.generate_key(ALICE, "Alice", algorithm="ed25519")
    new_file = tmp_path / "alice-new.asc"
    new_file.write_text(new_key.public.armored)
    with Wire(server) as wire:
        assert wire.auth(ALICE)["status"] == "OK"
        result = ok(capsys, data_dir, "accounts", "reset-key", ALICE, "--key", str(new_file))
        assert result["fingerprint"] == new_key.public.fingerprint
        # The connection proved the old key: it is no longer alice.
        assert wire.error("CHECK", {"email": ALICE}) == "AUTH_REQUIRED"
        assert error_code(wire.auth(ALICE)) == "AUTH_FAILED"
        assert wire.auth(ALICE, new_key)["status"] == "OK"
    wrong = refused(capsys, data_dir, "accounts", "reset-key", ALICE, "--key", str(key_file))
    assert "cannot be used" in wrong


def test_reserved_names(running, capsys):
    server, data_dir = running
    result = ok(capsys, data_dir, "reserved", "add", "Sales")
    assert "sales" in result["added"] and "postmaster" in result["builtin"]
    with Wire(server) as wire:
        assert error_code(wire.register("(sales+eu)%(localhost)")) == "FORBIDDEN"
        ok(capsys, data_dir, "reserved", "remove", "sales")
        assert wire.register("(sales+eu)%(localhost)")["status"] == "OK"
    assert "by the protocol" in refused(capsys, data_dir, "reserved", "remove", "postmaster")


def test_domain_key_rotation(running, capsys):
    _, data_dir = running
    first = ok(capsys, data_dir, "domain-key", "list")
    rotated = ok(capsys, data_dir, "domain-key", "rotate")
    assert rotated["active"] != first["active"]
    assert {k["id"] for k in rotated["keys"]} == {first["active"], rotated["active"]}


def test_errors_are_one_sentence(running, capsys, tmp_path):
    _, data_dir = running
    assert "no account" in refused(capsys, data_dir, "accounts", "disable", BOB)
    assert "not held" in refused(capsys, data_dir, "accounts", "release", BOB)
    assert "not of the form" in refused(capsys, data_dir, "accounts", "invite", "bob")
    assert "no server database" in refused(capsys, tmp_path / "nowhere", "accounts", "list")
    registered(running[0], BOB)
    assert "not a size" in refused(capsys, data_dir, "quota", "set", BOB, "--bytes", "lots")


def test_the_console_script_runs(running, tmp_path):
    server, data_dir = running
    registered(server, BOB)
    config = tmp_path / "server.toml"
    config.write_text(f'[server]\ndata_dir = "{data_dir}"\ndomains = ["localhost"]\n')
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

    server, data_dir = running
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
    ok(capsys, data_dir, "accounts", "reset-key", erin, "--key", str(key_file))
    with Wire(server) as wire:
        assert wire.auth(erin, new)["status"] == "OK"
