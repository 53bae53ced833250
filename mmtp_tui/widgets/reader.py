"""The reader: headers, security status (encryption, signature with the signer's
fingerprint, integrity), attachments, the body, and the rest of the thread."""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from ..mailstore import StoredMessage
from .message_list import short_date


def security_lines(message: StoredMessage) -> Text:
    text = Text()
    if message.encrypted:
        if message.decrypted:
            text.append("🔒 Encrypted", style="bold green")
            text.append(" (decrypted for you)\n")
        else:
            text.append("🔒 Encrypted, NOT decrypted", style="bold red")
            text.append(f": {message.problem or 'no key'}\n")
    else:
        text.append("Not encrypted", style="yellow")
        text.append(" (the server could read it)\n")
    if message.signature == "verified":
        text.append("✓ Signature verified", style="bold green")
        text.append(f" by {message.signer_fingerprint}\n")
    elif message.signature == "bad":
        text.append("✗ BAD SIGNATURE", style="bold white on red")
        text.append(": it does not match the sender's pinned key\n")
    elif message.signature == "unknown":
        text.append("? Signature not checked", style="bold yellow")
        text.append(": the sender's key is unknown\n")
    else:
        text.append("Unsigned", style="yellow")
        text.append(": anyone could have written it\n")
    if message.integrity_ok:
        text.append("Integrity: content matches its hash\n", style="green")
    else:
        text.append("INTEGRITY FAILED: the content was altered\n", style="bold white on red")
    return text


def render_message(message: StoredMessage, thread: list[StoredMessage]) -> Text:
    text = Text()
    for label, value in (
        ("From", message.sender),
        ("To", message.recipient),
        ("Date", short_date(message.timestamp) + " UTC"),
        ("Subject", message.subject or "(no subject)"),
    ):
        text.append(f"{label:>8}: ", style="bold")
        text.append(f"{value}\n")
    text.append("\n")
    text.append_text(security_lines(message))
    for index, att in enumerate(message.attachments, 1):
        text.append(f"📎 {index}. {att.get('filename')} ", style="bold")
        text.append(f"({att.get('contentType')}, {att.get('size')} bytes) — s saves\n")
    text.append("─" * 40 + "\n", style="dim")
    text.append(message.body or "")
    text.append("\n")
    others = [m for m in thread if m.id != message.id]
    if others:
        text.append("\n── Thread ──\n", style="bold dim")
        for other in thread:
            marker = "▶ " if other.id == message.id else "  "
            text.append(
                f"{marker}{short_date(other.timestamp)}  {other.sender}  "
                f"{other.subject or '(no subject)'} [{other.folder}]\n",
                style="bold" if other.id == message.id else "",
            )
    return text


class Reader(VerticalScroll):
    def compose(self):
        yield Static("", id="key-change-banner")
        yield Static("Select a message to read it.", id="reader-text")

    def show(
        self,
        message: StoredMessage | None,
        thread: list[StoredMessage],
        *,
        key_change: str | None = None,
    ) -> None:
        """`key_change`: the warning about the sender's changed key, shown above all else."""
        banner = self.query_one("#key-change-banner", Static)
        banner.display = bool(key_change)
        banner.update(f"⚠ SENDER'S KEY CHANGED ⚠\n{key_change}" if key_change else "")
        body = self.query_one("#reader-text", Static)
        if message is None:
            body.update("Select a message to read it.")
        else:
            body.update(render_message(message, thread))
        self.scroll_home(animate=False)
