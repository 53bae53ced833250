"""`mmtp`, the scripting command, against a real server on loopback: two users of one machine
(their own config and data dirs), set up as mmtp-tui sets up an account."""

from __future__ import annotations

import io
import json
import mailbox
import os
import subprocess
import sys
from email.header import decode_header, make_header
from pathlib import Path

import pytest

from mmtp_tui import cli

ALICE = "(alice)%(localhost)"
BOB = "(bob)%(localhost)"


def use(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for var, value in env.items():
        monkeypatch.setenv(var, value)


def run(capsys, monkeypatch, argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def run_command(
    env: dict[str, str], argv: list[str], stdin: str = ""
) -> subprocess.CompletedProcess:
    """The command as a script runs it: its own process."""
    return subprocess.run(
        [sys.executable, "-m", "mmtp_tui.cli", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        env={**{k: v for k, v in os.environ.items() if k != "MMTP_PASSPHRASE"}, **env},
        timeout=120,
    )


def test_send_fetch_list_read_export(server, cli_user, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("MMTP_PASSPHRASE", raising=False)
    bob = cli_user(server, "bob", BOB)
    cli_user(server, "alice", ALICE)  # made last: the current user, who sends
    attachment = tmp_path / "notes.txt"
    attachment.write_bytes(b"attached bytes\n")
    body = "Hello Bob,\nFrom here on, all is well.\n>From quoted already.\n"
    code, out, err = run(
        capsys,
        monkeypatch,
        ["send", "--to", BOB, "--subject", "Grüße", "--attach", str(attachment), "--json"],
        stdin=body,
    )
    assert code == 0, err
    sent = json.loads(out)
    assert sent["encrypted"] and sent["signed"] and not sent["duplicate"]
    assert sent["queued"] is False  # a local recipient: in the mailbox, not relayed
    code, out, err = run(capsys, monkeypatch, ["send", "--to", BOB, "--no-encrypt"], "second")
    assert code == 0 and out.startswith("sent "), err
    code, out, _ = run(capsys, monkeypatch, ["list", "--folder", "Sent", "--json"])
    assert len(json.loads(out)) == 2

    use(monkeypatch, bob)
    code, out, err = run(capsys, monkeypatch, ["fetch", "--json"])
    assert code == 0, err
    assert json.loads(out)["new"] == 2
    code, out, _ = run(capsys, monkeypatch, ["list", "--json"])
    listed = json.loads(out)
    assert {m["subject"] for m in listed} == {"Grüße", ""}
    first = next(m for m in listed if m["subject"] == "Grüße")
    assert first["messageId"] == sent["messageId"]
    assert first["encrypted"] and first["signature"] == "verified" and not first["read"]
    code, out, _ = run(capsys, monkeypatch, ["list"])
    assert code == 0 and "Grüße" in out and ALICE in out

    code, out, _ = run(capsys, monkeypatch, ["read", sent["messageId"], "--json"])
    message = json.loads(out)
    assert message["body"] == body and message["from"] == ALICE
    assert message["attachments"] == [
        {"filename": "notes.txt", "contentType": "text/plain", "size": 15}
    ]
    code, out, _ = run(capsys, monkeypatch, ["read", str(first["id"])])
    assert code == 0 and "Subject: Grüße" in out and "all is well" in out
    code, out, _ = run(capsys, monkeypatch, ["list", "--json"])
    assert next(m for m in json.loads(out) if m["id"] == first["id"])["read"]

    target = tmp_path / "bob.mbox"
    code, _, err = run(capsys, monkeypatch, ["export", "--mbox", str(target)])
    assert code == 0 and "2 messages" in err
    raw = target.read_bytes()
    assert raw.startswith(b"From alice@localhost ")
    assert b"\n>From here on" in raw and b"\n>>From quoted" in raw  # mboxrd quoting
    opened = mailbox.mbox(target, create=False)
    try:
        box = list(opened)
    finally:
        opened.close()
    assert len(box) == 2
    mail = next(m for m in box if m["Message-ID"] == f"<{sent['messageId']}@mmtp>")
    assert str(make_header(decode_header(mail["Subject"]))) == "Grüße"
    assert mail["X-MMTP-Signature"] == "verified"
    text, attached = mail.get_payload()
    unquoted = text.get_payload(decode=True).decode().replace("\n>From", "\nFrom", 1)
    assert unquoted.replace("\n>>From", "\n>From") == body
    assert attached.get_filename() == "notes.txt"
    assert attached.get_payload(decode=True) == b"attached bytes\n"
    code, _, err = run(capsys, monkeypatch, ["export", "--mbox", str(target)])
    assert code == 1 and "already exists" in err  # never overwrites


def test_errors_are_one_sentence_and_a_nonzero_exit(server, cli_user):
    alice = cli_user(server, "alice", ALICE, passphrase="correct horse")
    locked = run_command({**alice, "MMTP_PASSPHRASE": ""}, ["fetch"])
    wrong = run_command({**alice, "MMTP_PASSPHRASE": "wrong"}, ["fetch"])
    no_account = run_command(alice, ["--account", "nobody", "list"])
    no_message = run_command(alice, ["read", "42"])
    bad_address = run_command(alice, ["send", "--to", "bob@localhost"], "x")
    for result in (locked, wrong, no_account, no_message, bad_address):
        assert result.returncode == 1, result
        assert "Traceback" not in result.stderr
        assert result.stderr.startswith("mmtp: error: ")
        assert result.stderr.count("\n") == 1, result.stderr
    assert "nobody" in no_account.stderr and "42" in no_message.stderr
    missing = run_command(alice, ["fetch"])  # no passphrase and no terminal to ask on
    assert missing.returncode == 1 and "MMTP_PASSPHRASE" in missing.stderr
    ok = run_command({**alice, "MMTP_PASSPHRASE": "correct horse"}, ["fetch", "--json"])
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {"new": 0, "deleted": 0, "unreadable": 0, "warnings": []}
    usage = run_command(alice, ["list", "--folder", "Nowhere"])
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


def test_the_command_does_not_load_textual():
    code = "import sys, mmtp_tui.cli; print('textual' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_the_console_script_runs(server, cli_user):
    env = cli_user(server, "alice", ALICE)
    script = Path(sys.executable).with_name("mmtp")
    done = subprocess.run(
        [str(script), "list", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
