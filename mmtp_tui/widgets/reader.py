"""The reader: headers, security status (encryption, signature with the signer's
fingerprint, integrity), a delivery report's facts (DSN), attachments, the body, and the rest
of the thread."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from ..attachments import safe_name
from ..mailstore import (
    DELIVERED,
    FAILED,
    QUEUED,
    RELAYING,
    SENT,
    Delivery,
    Queued,
    Recipient,
    StoredMessage,
)
from ..plain import printable_text
from .message_list import short_date


def security_lines(message: StoredMessage) -> Text:
    """Encryption, signature and integrity on one line (two when narrow): at 80×24 the
    body must start near the top of the reader."""
    parts: list[Text] = []
    if message.encrypted:
        if message.decrypted:
            parts.append(Text("🔒 Encrypted", style="bold green"))
        else:
            part = Text("🔒 Encrypted, NOT decrypted", style="bold red")
            part.append(f": {message.problem or 'no key'}", style="")
            parts.append(part)
    else:
        part = Text("Not encrypted", style="yellow")
        part.append(" (the server could read it)", style="")
        parts.append(part)
    if message.signature == "verified":
        part = Text("✓ Signature verified", style="bold green")
        part.append(f" by {message.signer_fingerprint}", style="")
    elif message.signature == "bad":
        part = Text("✗ BAD SIGNATURE", style="bold white on red")
        part.append(": it does not match the sender's pinned key", style="")
    elif message.signature == "unknown":
        part = Text("? Signature not checked", style="bold yellow")
        part.append(": the sender's key is unknown", style="")
    else:
        part = Text("Unsigned", style="yellow")
        part.append(": anyone could have written it", style="")
    parts.append(part)
    if not message.integrity_ok:
        parts.append(Text("INTEGRITY FAILED: the content was altered", style="bold white on red"))
    text = Text(" · ").join(parts)
    text.append("\n")
    return text


_ACTIONS = {
    "failed": ("✗ Not delivered", "bold red"),
    "delayed": ("⏳ Delayed: not delivered yet, still trying", "bold yellow"),
    "delivered": ("✓ Delivered", "bold green"),
}
_DSN_FIELD_MAX = 500  # the server caps the diagnostic so; the other fields are shorter


def _dsn_of(message: StoredMessage) -> dict[str, Any] | None:
    meta = message.packet.get("meta") or {}
    content = message.packet.get("content")
    if not isinstance(meta, dict) or meta.get("type") != "DSN" or not isinstance(content, dict):
        return None
    dsn = content.get("dsn")
    return dsn if isinstance(dsn, dict) else None


def delivery_report(message: StoredMessage) -> Text | None:
    """A DSN (SPEC §10) as a delivery report in words; None for any other message. Every
    value came from a server (the diagnostic from a remote one): plain Text, never markup."""
    dsn = _dsn_of(message)
    if dsn is None:
        return None

    def value(key: str) -> str:
        found = dsn.get(key)
        return "—" if found is None or found == "" else str(found)[:_DSN_FIELD_MAX]

    words, style = _ACTIONS.get(str(dsn.get("action")), ("? Delivery report", "bold"))
    text = Text()
    text.append("📬 Delivery report: ", style="bold")
    text.append(words, style=style)
    for label, key in (
        ("Recipient", "recipient"),
        ("Code", "code"),
        ("Diagnostic", "diagnostic"),
        ("Attempts", "attempts"),
        ("Remote", "remote"),
        ("About", "messageId"),
    ):
        text.append(f"\n  {label:>10}: ", style="bold")
        text.append(value(key))
    last = dsn.get("lastAttemptAt")
    if isinstance(last, int) and not isinstance(last, bool):
        text.append(f"\n  {'Last try':>10}: ", style="bold")
        text.append(short_date(last) + " UTC")
    text.append("\n")
    return text


_STATES = {
    QUEUED: ("⏳ queued", "bold yellow"),
    SENT: ("✓ sent", "bold green"),  # to a local mailbox: it is there
    RELAYING: ("⏳ relaying", "bold yellow"),  # your server took it for another domain
    DELIVERED: ("✓ delivered", "bold green"),  # the other domain's server has it (a DSN)
    FAILED: ("✗ failed", "bold red"),
}


def recipient_states(entries: list[Recipient] | list[Delivery]) -> Text:
    """Each recipient of a sent message, and how far it got (sent to a local mailbox,
    relaying to another domain, delivered or failed there as delivery reports say).
    Addresses and the servers' words are plain Text, never markup."""
    text = Text()
    text.append("Recipients:\n", style="bold")
    for entry in entries:
        state = entry.delivery_state if isinstance(entry, Recipient) else entry.state
        words, style = _STATES.get(state, (state, "bold"))
        kind = getattr(entry, "kind", "")
        text.append(f"  {words:<9} ", style=style)
        text.append(entry.address)
        if kind and kind != "to":
            text.append(f" ({kind.title()})", style="dim")
        if entry.error:
            text.append(": ")
            text.append(entry.error)
        text.append("\n")
    return text


def render_message(
    message: StoredMessage,
    thread: list[StoredMessage],
    deliveries: list[Delivery] | None = None,
) -> Text:
    text = Text()
    text.append("   From: ", style="bold")
    text.append(message.sender)
    text.append("   ")
    text.append(short_date(message.timestamp) + " UTC", style="dim")
    text.append("\n     To: ", style="bold")
    text.append(message.recipient)
    text.append("\nSubject: ", style="bold")
    text.append(message.subject or "(no subject)", style="bold")
    text.append("\n")
    text.append_text(security_lines(message))
    report = delivery_report(message)
    if report is not None:
        text.append_text(report)
    if deliveries:
        text.append_text(recipient_states(deliveries))
    for index, att in enumerate(message.attachments, 1):
        name = safe_name(str(att.get("filename") or "attachment"))
        text.append(f"📎 {index}. {name} ", style="bold")
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


def render_queued(item: Queued) -> Text:
    """An Outbox entry: what waits, since when, and why it is still here."""
    text = Text()
    text.append("     To: ", style="bold")
    text.append(", ".join(item.outgoing.recipients()))
    text.append("\nSubject: ", style="bold")
    text.append(item.outgoing.subject or "(no subject)", style="bold")
    text.append("\n⏳ In the Outbox since ", style="bold yellow")
    text.append(short_date(item.created) + " UTC")
    if item.recipients:
        left = len(item.waiting())
        sealed = all(r.packet is not None for r in item.waiting())
        text.append(
            f": {left} of {len(item.recipients)} recipients still to send to"
            + (", stamped" if sealed else ", sealed and stamped when the server answers")
            + ".\n"
        )
        text.append_text(recipient_states(item.recipients))
    else:
        text.append(
            ": stamped, goes out when the server answers.\n"
            if item.packet is not None
            else ": sealed and stamped when the server answers.\n"
        )
    if item.last_error:
        text.append(f"Tried {item.attempts}×; last: ", style="yellow")
        text.append(item.last_error)
        text.append("\n")
    text.append("─" * 40 + "\n", style="dim")
    text.append(item.outgoing.body)
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
        deliveries: list[Delivery] | None = None,
    ) -> None:
        """`key_change`: the warning about the sender's changed key, shown above all else."""
        banner = self.query_one("#key-change-banner", Static)
        banner.display = bool(key_change)
        banner.update(
            printable_text(Text(f"⚠ SENDER'S KEY CHANGED ⚠\n{key_change}" if key_change else ""))
        )
        body = self.query_one("#reader-text", Static)
        if message is None:
            body.update("Select a message to read it.")
        else:
            body.update(printable_text(render_message(message, thread, deliveries)))
        self.scroll_home(animate=False)

    def show_queued(self, item: Queued | None) -> None:
        self.query_one("#key-change-banner", Static).display = False
        body = self.query_one("#reader-text", Static)
        body.update(printable_text(render_queued(item)) if item is not None else "")
        self.scroll_home(animate=False)
