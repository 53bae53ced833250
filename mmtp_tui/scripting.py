"""The logic behind the `mmtp` command: the TUI's accounts (tui.toml), keys and local store,
without a screen. Plain module: no Textual (the command must start fast).

Passphrases come from ``MMTP_PASSPHRASE`` or a prompt on the terminal, never from arguments
(they would show in `ps` and in shell history).
"""

from __future__ import annotations

import getpass
import mimetypes
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate
from pathlib import Path
from typing import Any, BinaryIO

from mmtp_proto.errors import LocalError
from mmtp_proto.keystore import Keystore
from mmtp_proto.known_servers import KnownServers
from mmtp_proto.minter import Minter
from mmtp_proto.outgoing import Outgoing
from mmtp_proto.packet import decode_attachment, is_message_id, make_attachment
from mmtp_proto.sending import SendResult

from . import config
from .local_server import LocalServer
from .mailstore import FOLDERS, MailStore, StoredMessage
from .plain import printable
from .session import AccountSession, default_keystore, default_store_path

PASSPHRASE_ENV = "MMTP_PASSPHRASE"
_ADDRESS = re.compile(r"\((?P<name>[^()]*)\)%\((?P<domain>[^()]*)\)")
_FROM_LINE = re.compile(rb"^>*From ")


# ---------------------------------------------------------------------- accounts and keys


def tty_prompt_available() -> bool:
    """A person at a terminal can answer (getpass reads /dev/tty, not a piped stdin)."""
    if not sys.stderr.isatty():
        return False
    try:
        with open("/dev/tty", "rb"):
            return True
    except OSError:
        return False


def ask_trust(host: str, port: int, fingerprint: str) -> bool:
    """A server certificate seen for the first time: a person decides, or nobody trusts it."""
    if not tty_prompt_available():
        raise LocalError(
            f"the certificate of {host}:{port} is not known yet (fingerprint {fingerprint}); "
            "connect once from mmtp-tui or in a terminal, or pass --trust-new-server"
        )
    sys.stderr.write(f"First connection to {host}:{port}.\nCertificate {fingerprint}\n")
    with open("/dev/tty", "r+", encoding="utf-8") as tty:
        tty.write("Trust this server? [y/N] ")
        tty.flush()
        return tty.readline().strip().lower() in ("y", "yes")


def open_session(
    account_name: str | None,
    *,
    config_path: Path | None = None,
    trust_new_server: bool = False,
    store: MailStore | None = None,
    keystore: Keystore | None = None,
) -> AccountSession:
    """The session the TUI would use for this account (the active one by default)."""
    settings = config.load(config_path)
    if account_name is not None:
        account = settings.accounts.get(account_name)
        if account is None:
            names = ", ".join(sorted(settings.accounts)) or "none"
            raise LocalError(f"no account named {account_name!r} (configured: {names})")
    else:
        account = settings.account
        if account is None:
            raise LocalError("no account is configured yet: run mmtp-tui once to set one up")
    known = KnownServers()
    if account.local_server:
        # The TUI's own server: we pin what it wrote, as the TUI does; it must be running.
        local = LocalServer()
        info = local.running_elsewhere()
        if info is None:
            raise LocalError(
                "this account uses the local server, which is not running: start mmtp-tui"
            )
        account.host, account.port, account.secure_port = info.host, info.port, info.secure_port
        known = KnownServers(local.directory / "known_servers")
        known.forget(info.host, info.secure_port)
        known.pin(info.host, info.secure_port, info.fingerprint)

    def on_new(host: str, port: int, fingerprint: str) -> bool:
        return trust_new_server or ask_trust(host, port, fingerprint)

    return AccountSession(
        account,
        store=store or MailStore(default_store_path()),
        keystore=keystore or default_keystore(),
        known_servers=known,
        on_new_fingerprint=on_new,
    )


def unlock(session: AccountSession, ask: Callable[[str], str] = getpass.getpass) -> None:
    """Unlock the account's key: from MMTP_PASSPHRASE, else a prompt on the terminal."""
    if not session.has_key():
        raise LocalError(f"there is no key for {session.address}: set one up in mmtp-tui")
    if not session.needs_passphrase():
        session.key()
        return
    passphrase = os.environ.get(PASSPHRASE_ENV)
    if passphrase is None:
        if not tty_prompt_available():
            raise LocalError(
                f"the key of {session.address} is protected: set {PASSPHRASE_ENV} or run "
                "in a terminal to be asked"
            )
        passphrase = ask(f"Passphrase for {session.address}: ")
    session.unlock(passphrase)


# ---------------------------------------------------------------------- reading


def find(session: AccountSession, ident: str) -> StoredMessage:
    """A message by its local number (as `list` shows) or its messageId (or a unique
    prefix of at least 6 characters)."""
    name = session.account.name
    message = None
    if ident.isdigit() and len(ident) < 19:
        message = session.store.get(int(ident))
        if message is not None and message.account != name:
            message = None
    elif is_message_id(ident) or ident.startswith("unreadable-"):
        message = session.store.find(name, ident)
    elif len(ident) >= 6 and re.fullmatch(r"[0-9a-f]+", ident):
        hits = [m for f in FOLDERS for m in session.store.folder(name, f)]
        hits = [m for m in hits if m.message_id.startswith(ident)]
        if len(hits) > 1:
            raise LocalError(f"{ident} matches {len(hits)} messages: give more of the id")
        message = hits[0] if hits else None
    if message is None:
        raise LocalError(f"no message {ident} in account {name}")
    return message


def messages(session: AccountSession, folders: Iterable[str]) -> list[StoredMessage]:
    found: list[StoredMessage] = []
    for folder in folders:
        if folder not in FOLDERS:
            raise LocalError(f"no folder {folder!r} (folders: {', '.join(FOLDERS)})")
        found += session.store.folder(session.account.name, folder)
    return found


def iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def summary(message: StoredMessage) -> dict[str, Any]:
    """What `list --json` gives per message."""
    return {
        "id": message.id,
        "messageId": message.message_id,
        "folder": message.folder,
        "from": message.sender,
        "to": message.recipient,
        "subject": message.subject,
        "date": iso(message.timestamp),
        "timestamp": message.timestamp,
        "read": message.read,
        "encrypted": message.encrypted,
        "decrypted": message.decrypted,
        "signature": message.signature,
        "integrityOk": message.integrity_ok,
        "unreadable": message.unreadable,
        "problem": message.problem,
        "attachments": len(message.attachments),
        "inReplyTo": message.in_reply_to,
        "thread": message.thread,
    }


def detail(message: StoredMessage) -> dict[str, Any]:
    """What `read --json` gives: the summary, the (decrypted) body, attachments described."""
    return {
        **summary(message),
        "body": message.body,
        "signerFingerprint": message.signer_fingerprint,
        "references": message.refs,
        "attachments": [
            {
                "filename": str(a.get("filename", "")),
                "contentType": str(a.get("contentType", "")),
                "size": a.get("size"),
            }
            for a in message.attachments
            if isinstance(a, dict)
        ],
    }


# ---------------------------------------------------------------------- sending


def attachment_from(path: Path) -> dict[str, Any]:
    try:
        data = path.expanduser().read_bytes()
    except OSError as exc:
        raise LocalError(f"cannot read {path}: {exc.strerror or exc}") from None
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return make_attachment(path.name, data, kind)


def send(session: AccountSession, outgoing: Outgoing) -> SendResult:
    """Through the one pipeline (AccountSession.send), stamped in this process."""
    with session.connected() as client:
        return session.send(client, outgoing, minter=Minter(processes=0))


# ---------------------------------------------------------------------- mbox (RFC 4155)


def _mail_address(address: str) -> str:
    """(name)%(domain) as name@domain, for mail tools reading the export."""
    match = _ADDRESS.fullmatch(address)
    return f"{match['name']}@{match['domain']}" if match else "unknown@invalid"


def _header_text(text: str) -> str:
    return " ".join(printable(text).split())


def to_email(message: StoredMessage) -> EmailMessage:
    """One stored message as an RFC 5322 message (decrypted body, attachments as parts)."""
    mail = EmailMessage()
    mail["From"] = f'"{_header_text(message.sender)}" <{_mail_address(message.sender)}>'
    mail["To"] = f'"{_header_text(message.recipient)}" <{_mail_address(message.recipient)}>'
    mail["Subject"] = _header_text(message.subject)
    mail["Date"] = formatdate(message.timestamp or message.received_at, usegmt=True)
    if is_message_id(message.message_id):
        mail["Message-ID"] = f"<{message.message_id}@mmtp>"
    if message.in_reply_to and is_message_id(message.in_reply_to):
        mail["In-Reply-To"] = f"<{message.in_reply_to}@mmtp>"
    refs = [f"<{r}@mmtp>" for r in message.refs if is_message_id(r)]
    if refs:
        mail["References"] = " ".join(refs)
    mail["X-MMTP-Folder"] = message.folder
    mail["X-MMTP-Signature"] = message.signature
    mail["X-MMTP-Encrypted"] = "yes" if message.encrypted else "no"
    if message.unreadable or message.problem:
        mail["X-MMTP-Problem"] = _header_text(message.problem or "unreadable")
    mail.set_content(message.body, cte="8bit")
    for attachment in message.attachments:
        try:
            data = decode_attachment(attachment)
        except (KeyError, TypeError, ValueError):
            continue  # a damaged attachment: the body still goes out
        kind = str(attachment.get("contentType", "")).split(";")[0].strip()
        maintype, _, subtype = kind.partition("/")
        if not (maintype and subtype) or maintype == "text":
            maintype, subtype = "application", "octet-stream"
        mail.add_attachment(
            data,
            maintype=maintype,
            subtype=subtype,
            filename=_header_text(str(attachment.get("filename", "attachment"))),
        )
    return mail


def write_mbox(messages: Iterable[StoredMessage], out: BinaryIO) -> int:
    """RFC 4155 mbox: a From_ line before each message, ">From " quoting (mboxrd: any line
    of `>`s then "From " gets one more `>`), a blank line after each. Returns the count."""
    policy = SMTP.clone(linesep="\n", cte_type="8bit", max_line_length=998)
    count = 0
    for message in sorted(messages, key=lambda m: (m.timestamp, m.id)):
        when = time.asctime(time.gmtime(message.timestamp or message.received_at))
        out.write(f"From {_mail_address(message.sender)} {when}\n".encode("ascii"))
        raw = to_email(message).as_bytes(policy=policy)
        for line in raw.removesuffix(b"\n").split(b"\n"):
            out.write((b">" + line if _FROM_LINE.match(line) else line) + b"\n")
        out.write(b"\n")
        count += 1
    return count
