"""One message to several recipients (To, Cc, Bcc; SPEC §9: one packet, one stamp and one
signature each), sent now or kept in the Outbox whole, and sent from there one recipient at
a time. Plain module: no Textual; workers call these blocking functions.

Every recipient is an Outbox `Recipient` with a state. The packets are sealed together (they
share a messageId; To/Cc one ciphertext, each Bcc recipient its own) and kept with their
stamps, so a server that goes away halfway leaves an entry that sends the same packets to
exactly the recipients still unsent, and never again to those done. What became of each
recipient is also written down beside the copy in Sent (`MailStore.deliveries`): one the home
server took for another domain is *relaying* until a delivery report (DSN, SPEC §10) fetched
later says delivered or failed (:func:`note_report`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mmtp_proto import errors, pgp
from mmtp_proto.actions.greeting import DEFAULT_DIFFICULTY
from mmtp_proto.address import domain_of, normalize_address
from mmtp_proto.client import Client
from mmtp_proto.dsn import DSN_TYPE, POSTMASTER, clean_diagnostic
from mmtp_proto.errors import LocalError, MMTPError
from mmtp_proto.hashcash import MintCancelled
from mmtp_proto.minter import Minter, MintStatus
from mmtp_proto.outgoing import Outgoing
from mmtp_proto.packet import is_message_id
from mmtp_proto.sending import SendResult, Step, seal_for_all, stamp_packet

from .mailstore import FAILED, QUEUED, SENT, Queued, Recipient
from .session import AccountSession, StampCounter, error_text

# A stamp made offline may be below what the recipient's domain asks: mint it again.
_RESTAMP = frozenset(
    (
        errors.POW_INSUFFICIENT,
        errors.POW_INVALID,
        errors.POW_EXPIRED,
        errors.POW_MISMATCH,
        errors.POW_REPLAYED,
    )
)
# The server cannot take it now, but may later: the recipient stays queued.
_LATER = frozenset(
    (
        errors.RATE_LIMITED,
        errors.TOO_MANY_CONNECTIONS,
        errors.INTERNAL,
        errors.REMOTE_UNAVAILABLE,
    )
)

Outcome = SendResult | MMTPError | LocalError
KeyFor = Callable[[str], pgp.PublicKey]


class Gone(Exception):
    """The server went away while sending: what is left waits in the Outbox."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(error_text(cause))
        self.cause = cause


def recipients_of(outgoing: Outgoing) -> list[Recipient]:
    """One entry per distinct address: To, then Cc, then Bcc (a Bcc address also in To or
    Cc is dropped, as sealing does). An address that is not one fails at once."""
    entries: list[Recipient] = []
    seen: set[str] = set()
    for kind, addresses in (("to", outgoing.to), ("cc", outgoing.cc), ("bcc", outgoing.bcc)):
        for typed in addresses:
            if not typed.strip():
                continue
            try:
                address = normalize_address(typed)
            except (MMTPError, LocalError) as exc:
                entries.append(
                    Recipient(typed.strip().lower(), kind, FAILED, None, error_text(exc))
                )
                continue
            if address not in seen:
                seen.add(address)
                entries.append(Recipient(address, kind))
    return entries


def _normal(typed: str) -> str | None:
    try:
        return normalize_address(typed)
    except (MMTPError, LocalError):
        return None


def message_id_of(entries: list[Recipient]) -> str | None:
    for entry in entries:
        if entry.message_id:
            return entry.message_id
    return None


def record(session: AccountSession, entries: list[Recipient]) -> None:
    """Write each recipient's state beside the message (once it has an id)."""
    message_id = message_id_of(entries)
    if message_id is None:
        return
    for entry in entries:
        session.store.set_delivery(
            session.account.name,
            message_id,
            entry.address,
            entry.delivery_state,
            entry.error,
            kind=entry.kind,
        )


def note_report(session: AccountSession, packet: dict[str, Any]) -> bool:
    """A fetched delivery report (DSN) about a message this account sent: the recipient's
    state beside the copy in Sent follows it. Only a DSN from the account's own server
    (its postmaster) counts, and only for a recipient already written down. True when a
    state changed. Everything in it came from servers: plain text, bounded."""
    meta = packet.get("meta")
    content = packet.get("content")
    if not isinstance(meta, dict) or meta.get("type") != DSN_TYPE or not isinstance(content, dict):
        return False
    if packet.get("sender") != f"({POSTMASTER})%({domain_of(session.address)})":
        return False
    dsn = content.get("dsn")
    if not isinstance(dsn, dict) or not is_message_id(dsn.get("messageId")):
        return False
    recipient = _normal(dsn.get("recipient")) if isinstance(dsn.get("recipient"), str) else None
    if recipient is None:
        return False
    return session.store.report_delivery(
        session.account.name,
        str(dsn["messageId"]),
        recipient,
        str(dsn.get("action")),
        clean_diagnostic(dsn.get("diagnostic")),
    )


def seal(
    session: AccountSession, outgoing: Outgoing, entries: list[Recipient], key_for: KeyFor
) -> None:
    """Seal a packet for every queued entry that has none. An entry whose key cannot be had
    (encrypted mail) fails alone; the others are sealed without it."""
    wanted = [e for e in entries if e.state == QUEUED and e.packet is None]
    usable: list[Recipient] = []
    for entry in wanted:
        try:
            if outgoing.encrypt:
                key_for(entry.address)
        except (MMTPError, LocalError) as exc:
            entry.state, entry.error = FAILED, error_text(exc)
            continue
        usable.append(entry)
    if not usable:
        return
    keep = {e.address for e in usable}
    trimmed = Outgoing.from_dict(outgoing.to_dict())
    trimmed.to = [a for a in outgoing.to if _normal(a) in keep]
    trimmed.cc = [a for a in outgoing.cc if _normal(a) in keep]
    trimmed.bcc = [a for a in outgoing.bcc if _normal(a) in keep]
    packets = seal_for_all(
        trimmed,
        sender=session.address,
        sign_with=session.key() if outgoing.sign else None,
        key_for=key_for,
    )
    for entry in usable:
        entry.packet = packets.get(entry.address)
        if entry.packet is None:  # cannot happen: sealing lists every usable address
            entry.state, entry.error = FAILED, "not sealed"
        else:
            entry.message_id = str(entry.packet["meta"]["messageId"])


def stamped(entry: Recipient) -> bool:
    """Sealed and stamped: ready to go as it is."""
    return entry.packet is not None and bool(entry.packet["meta"].get("hashcashToken"))


def queue_all(
    session: AccountSession,
    outgoing: Outgoing,
    *,
    minter: Minter,
    progress: Callable[[MintStatus], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    on_stamp: StampCounter | None = None,
) -> tuple[int, bool]:
    """Put the whole message in the Outbox: sealed and stamped per recipient when every
    pinned key is at hand (else sealed when the server answers). (Outbox id, stamped)."""
    entries = recipients_of(outgoing)
    waiting = [e for e in entries if e.state == QUEUED]
    pinned = not outgoing.encrypt or all(session.contacts.get(e.address) for e in waiting)
    if waiting and pinned:

        def key_for(email: str) -> pgp.PublicKey:
            key = session.contacts.get(email)
            if key is None:
                raise LocalError(f"no pinned key for {email}")
            return key

        seal(session, outgoing, entries, key_for)
        bits = session.store.difficulty(session.account.name) or DEFAULT_DIFFICULTY
        todo = [e for e in entries if e.state == QUEUED and e.packet is not None]
        for n, entry in enumerate(todo, 1):
            assert entry.packet is not None
            if on_stamp is not None:
                on_stamp(n, max(n, len(entries)))
            stamp_packet(entry.packet, bits=bits, minter=minter, progress=progress, cancel=cancel)
    row = session.store.queue(session.account.name, outgoing, None, entries)
    record(session, entries)
    ready = bool(waiting) and all(stamped(e) for e in entries if e.state == QUEUED)
    return row, ready


def submit(
    session: AccountSession,
    client: Client,
    outgoing: Outgoing,
    entries: list[Recipient],
    *,
    minter: Minter,
    outcomes: dict[str, Outcome] | None = None,
    on_change: Callable[[], None] | None = None,
    on_step: Callable[[Step], None] | None = None,
    progress: Callable[[MintStatus], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    on_stamp: StampCounter | None = None,
) -> None:
    """Stamp (at each domain's difficulty, when not stamped yet) and submit every queued
    entry in turn, marking it sent or failed, and keep the copy in Sent. Raises Gone when
    the server goes away: the entries not yet sent stay queued."""
    todo = [e for e in entries if e.state == QUEUED and e.packet is not None]
    for n, entry in enumerate(todo, 1):
        packet = entry.packet
        assert packet is not None
        try:
            bits = client.difficulty_for(domain_of(entry.address))

            def restamp(target: dict[str, Any], bits: int = bits, n: int = n) -> None:
                if on_step is not None:
                    on_step(Step.STAMP)
                if on_stamp is not None:  # out of every recipient, as the user wrote them
                    on_stamp(n, max(n, len(entries)))
                stamp_packet(target, bits=bits, minter=minter, progress=progress, cancel=cancel)
                if on_step is not None:
                    on_step(Step.SUBMIT)

            if not stamped(entry):
                restamp(packet)
            try:
                result = client.send_packet(packet, restamp=restamp)
            except MMTPError as exc:
                if exc.code not in _RESTAMP or not client.is_connected():
                    raise
                restamp(packet)
                result = client.send_packet(packet, restamp=restamp)
        except (MMTPError, LocalError, OSError) as exc:
            if isinstance(exc, OSError) or not client.is_connected():
                raise Gone(exc) from exc
            entry.error = error_text(exc)
            if not (isinstance(exc, MMTPError) and exc.code in _LATER):
                entry.state = FAILED
            if outcomes is not None and isinstance(exc, MMTPError | LocalError):
                outcomes[entry.address] = exc
        else:
            entry.state, entry.error, entry.packet = SENT, "", None  # done: not kept
            entry.relaying = result.queued
            session.keep_sent(outgoing, result)  # once: the same messageId is not kept twice
            if outcomes is not None:
                outcomes[entry.address] = result
        if on_change is not None:
            on_change()


class CancelledPartway(MintCancelled):
    """Sending was cancelled after some recipients (`sent`) had the message already."""

    def __init__(self, sent: list[str]) -> None:
        super().__init__(f"cancelled after sending to {', '.join(sent)}")
        self.sent = sent


def send_now(
    session: AccountSession,
    client: Client,
    outgoing: Outgoing,
    *,
    minter: Minter,
    on_step: Callable[[Step], None] | None = None,
    progress: Callable[[MintStatus], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    on_stamp: StampCounter | None = None,
) -> tuple[dict[str, Outcome], int | None, list[Recipient]]:
    """Seal and send to every recipient over `client`. When the server goes away (or can
    take a recipient only later) the message goes to the Outbox holding those recipients
    still unsent. Returns (outcomes of the recipients settled, Outbox id or None, entries)."""
    if on_step is not None:
        on_step(Step.SEAL)
    entries = recipients_of(outgoing)
    seal(session, outgoing, entries, lambda email: session.encryption_key(client, email))
    outcomes: dict[str, Outcome] = {}
    for entry in entries:
        if entry.state == FAILED:
            outcomes[entry.address] = LocalError(entry.error)
    record(session, entries)
    try:
        submit(
            session,
            client,
            outgoing,
            entries,
            minter=minter,
            outcomes=outcomes,
            on_change=lambda: record(session, entries),
            on_step=on_step,
            progress=progress,
            cancel=cancel,
            on_stamp=on_stamp,
        )
    except Gone:
        pass  # what is left goes to the Outbox below
    except MintCancelled:
        # Stopped by the user: those not sent to yet will not be (the compose stays open).
        for entry in entries:
            if entry.state == QUEUED:
                entry.state, entry.error = FAILED, "cancelled"
        record(session, entries)
        sent = [e.address for e in entries if e.state == SENT]
        if sent:  # the user must not send to them twice by sending again
            raise CancelledPartway(sent) from None
        raise
    if not any(e.state == QUEUED for e in entries):
        return outcomes, None, entries
    for entry in entries:
        if entry.state == QUEUED:
            outcomes.pop(entry.address, None)
    row = session.store.queue(session.account.name, outgoing, None, entries)
    record(session, entries)
    return outcomes, row, entries


def flush_one(
    session: AccountSession, client: Client, item: Queued, *, minter: Minter
) -> list[SendResult]:
    """Send an Outbox entry for several recipients from where it stopped; it leaves the
    Outbox when no recipient waits. What the server took now; Gone when the server goes
    away again (the entry keeps what is left)."""
    entries = item.recipients
    outcomes: dict[str, Outcome] = {}

    def keep() -> None:
        session.store.set_recipients(item.id, entries)
        record(session, entries)

    seal(session, item.outgoing, entries, lambda email: session.encryption_key(client, email))
    keep()
    submit(
        session, client, item.outgoing, entries, minter=minter, outcomes=outcomes, on_change=keep
    )
    if not item.waiting():
        session.store.unqueue(item.id)
    return [o for o in outcomes.values() if isinstance(o, SendResult)]


def take_back(session: AccountSession, item: Queued) -> Outgoing:
    """Stop sending an entry: what goes back to Drafts holds only the recipients not sent
    to yet (sending the draft again never reaches anyone twice); the others' states say
    it was taken back."""
    done = {e.address for e in item.recipients if e.state == SENT}
    outgoing = Outgoing.from_dict(item.outgoing.to_dict())
    outgoing.to = [a for a in outgoing.to if _normal(a) not in done]
    outgoing.cc = [a for a in outgoing.cc if _normal(a) not in done]
    outgoing.bcc = [a for a in outgoing.bcc if _normal(a) not in done]
    for entry in item.recipients:
        if entry.state == QUEUED:
            entry.state, entry.error = FAILED, "taken out of the Outbox (back in Drafts)"
    record(session, item.recipients)
    return outgoing
