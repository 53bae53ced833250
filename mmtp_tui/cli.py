"""`mmtp`: MMTP mail for scripts, on the TUI's accounts, keys and local store.

    mmtp list [--folder F] [--json]      mmtp read ID [--json]      mmtp fetch [--json]
    mmtp send --to A [--subject S] [--attach FILE] [--no-encrypt] [--no-sign]
              [--notify failure,delay,success] < body
    mmtp export --mbox [FILE]

Errors are one sentence on stderr and a non-zero exit (1; 2 for usage), never a traceback.
No Textual here: the command starts fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from mmtp_proto.errors import LocalError, MMTPError
from mmtp_proto.hashcash import MintCancelled
from mmtp_proto.outgoing import Outgoing

from . import scripting
from .mailstore import FOLDERS
from .session import AccountSession, error_text
from .sync import fetch


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmtp",
        description="MMTP mail from the shell, with the accounts, keys and mail of mmtp-tui. "
        f"A protected key's passphrase comes from ${scripting.PASSPHRASE_ENV} or a prompt.",
    )
    parser.add_argument("--account", metavar="NAME", help="a configured account (default: active)")
    parser.add_argument("--config", metavar="PATH", type=Path, help="settings file (tui.toml)")
    parser.add_argument(
        "--trust-new-server",
        action="store_true",
        help="accept a server certificate seen for the first time (trust on first use)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="list the messages of a folder")
    listing.add_argument("--folder", default="Inbox", choices=FOLDERS)
    listing.add_argument("--json", action="store_true", help="JSON for scripts")

    read = commands.add_parser("read", help="show one message (and mark it read)")
    read.add_argument("id", metavar="ID", help="the number `list` shows, or the messageId")
    read.add_argument("--json", action="store_true", help="JSON for scripts")

    fetching = commands.add_parser("fetch", help="get new mail from the server")
    fetching.add_argument("--json", action="store_true", help="JSON for scripts")

    sending = commands.add_parser("send", help="send a message; the body is read from stdin")
    sending.add_argument("--to", required=True, action="append", metavar="ADDRESS")
    sending.add_argument("--cc", action="append", default=[], metavar="ADDRESS")
    sending.add_argument("--subject", default="")
    sending.add_argument("--attach", action="append", default=[], type=Path, metavar="FILE")
    sending.add_argument("--no-encrypt", action="store_true", help="send in clear")
    sending.add_argument("--no-sign", action="store_true", help="do not sign")
    sending.add_argument(
        "--notify",
        metavar="EVENTS",
        help='delivery reports to ask for: failure,delay,success ("" for none)',
    )
    sending.add_argument("--json", action="store_true", help="JSON for scripts")

    export = commands.add_parser("export", help="export mail, decrypted, as an mbox file")
    export.add_argument("--mbox", action="store_true", required=True, help="RFC 4155 mbox")
    export.add_argument("file", nargs="?", type=Path, help="a new file (default: stdout)")
    export.add_argument(
        "--folder", action="append", choices=FOLDERS, help="only this folder (repeatable)"
    )
    return parser


def _print_json(value: Any, out: TextIO) -> None:
    # ASCII only: a sender's control or bidi characters stay escaped for whoever reads it.
    out.write(json.dumps(value, ensure_ascii=True) + "\n")


def _list(session: AccountSession, args: argparse.Namespace, out: TextIO) -> None:
    found = scripting.messages(session, [args.folder])
    if args.json:
        _print_json([scripting.summary(m) for m in found], out)
        return
    for m in found:
        flags = ("N" if not m.read else "-") + ("E" if m.encrypted else "-")
        flags += {"verified": "S", "bad": "!", "unknown": "?"}.get(m.signature, "-")
        subject = f"unreadable: {m.problem}" if m.unreadable else m.subject or "(no subject)"
        who = m.recipient if args.folder in ("Sent", "Drafts") else m.sender
        out.write(
            f"{m.id}\t{flags}\t{scripting.iso(m.timestamp)}\t"
            f"{scripting.printable(who)}\t{scripting.printable(subject)}\n"
        )


def _read(session: AccountSession, args: argparse.Namespace, out: TextIO) -> None:
    message = scripting.find(session, args.id)
    session.store.set_read(message.id)
    if args.json:
        _print_json(scripting.detail(message), out)
        return
    info = scripting.detail(message)
    lines = [
        f"From: {message.sender}",
        f"To: {message.recipient}",
        f"Date: {info['date']}",
        f"Subject: {message.subject}",
        f"Message-ID: {message.message_id}",
        f"Signature: {message.signature}" + (" (encrypted)" if message.encrypted else ""),
    ]
    if message.problem:
        lines.append(f"Problem: {message.problem}")
    for attachment in info["attachments"]:
        lines.append(f"Attachment: {attachment['filename']} ({attachment['size']} bytes)")
    out.write("\n".join(scripting.printable(line) for line in lines) + "\n\n")
    out.write(scripting.printable(message.body, newlines=True).rstrip("\n") + "\n")


def _fetch(session: AccountSession, args: argparse.Namespace, out: TextIO) -> None:
    scripting.unlock(session)
    result = fetch(session)
    if args.json:
        _print_json(
            {
                "new": result.new,
                "deleted": result.deleted,
                "unreadable": result.unreadable,
                "warnings": result.warnings,
            },
            out,
        )
        return
    out.write(f"{result.new} new message{'s' * (result.new != 1)}")
    if result.unreadable:
        out.write(f", {result.unreadable} unreadable (see `mmtp list`)")
    out.write(".\n")
    for warning in result.warnings:
        sys.stderr.write(f"mmtp: warning: {scripting.printable(warning)}\n")


def _send(session: AccountSession, args: argparse.Namespace, out: TextIO) -> None:
    attachments = [scripting.attachment_from(path) for path in args.attach]
    if sys.stdin.isatty():
        sys.stderr.write("Type the message; end with Ctrl-D.\n")
    body = sys.stdin.read()
    outgoing = Outgoing(
        to=args.to,
        cc=args.cc,
        subject=args.subject,
        body=body,
        attachments=attachments,
        encrypt=not args.no_encrypt,
        sign=not args.no_sign,
        notify=None
        if args.notify is None
        else [w.strip() for w in args.notify.split(",") if w.strip()],
    )
    outgoing.recipient()  # one clear sentence for a wrong address before unlocking anything
    scripting.unlock(session)  # the connection logs in (AUTH) with the key, signed or not
    result = scripting.send(session, outgoing)
    if args.json:
        _print_json(
            {
                "messageId": result.message_id,
                "duplicate": result.duplicate,
                "encrypted": result.encrypted,
                "signed": result.signed,
                "signatureVerified": result.signature_verified,
                "queued": result.queued,
            },
            out,
        )
    elif result.queued:
        out.write(f"queued {result.message_id} (your server relays it to the other domain)\n")
    else:
        out.write(f"sent {result.message_id}\n")


def _export(session: AccountSession, args: argparse.Namespace, out: TextIO) -> None:
    found = scripting.messages(session, args.folder or [f for f in FOLDERS if f != "Drafts"])
    if args.file is None:
        out.flush()
        scripting.write_mbox(found, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    try:
        fd = os.open(args.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise LocalError(f"{args.file} already exists: choose a new file name") from None
    with os.fdopen(fd, "wb") as handle:
        count = scripting.write_mbox(found, handle)
    sys.stderr.write(f"{count} message{'s' * (count != 1)} written to {args.file}\n")


COMMANDS = {"list": _list, "read": _read, "fetch": _fetch, "send": _send, "export": _export}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    session: AccountSession | None = None
    try:
        session = scripting.open_session(
            args.account, config_path=args.config, trust_new_server=args.trust_new_server
        )
        COMMANDS[args.command](session, args, sys.stdout)
        sys.stdout.flush()
    except MintCancelled:
        print("mmtp: cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("mmtp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (head, less) went away: not an error worth a word.
        sys.stderr.close()
        return 1
    except (LocalError, MMTPError, OSError) as exc:
        print(f"mmtp: error: {scripting.printable(error_text(exc))}", file=sys.stderr)
        return 1
    except Exception as exc:  # never a traceback for a script to parse
        print(f"mmtp: error: unexpected problem: {scripting.printable(str(exc))}", file=sys.stderr)
        return 1
    finally:
        if session is not None:
            session.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
