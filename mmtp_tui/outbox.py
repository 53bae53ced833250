"""The Outbox: a message that cannot be sent now (the server is down, we are offline) waits
in the store, sealed and stamped already when that can be done offline, and goes out when
the server answers again. Plain module: no Textual; workers call these blocking functions.

Sealing offline needs the recipient's pinned key (for an encrypted message); the stamp uses
the difficulty the server last asked for. What cannot be made offline is made at flush time
by the one send pipeline, and a packet the server no longer takes (too old, a higher
difficulty) is sealed and stamped again from the Outgoing kept beside it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mmtp_proto import errors, pgp
from mmtp_proto.actions.greeting import DEFAULT_DIFFICULTY
from mmtp_proto.address import normalize_address
from mmtp_proto.client import Client
from mmtp_proto.errors import LocalError, MMTPError
from mmtp_proto.minter import Minter, MintStatus
from mmtp_proto.outgoing import Outgoing
from mmtp_proto.sending import (
    Outcomes,
    SendResult,
    Step,
    difficulty_of,
    seal_outgoing,
    stamp_packet,
)

from . import fanout
from .mailstore import FAILED, QUEUED, SENT, Queued
from .session import AccountSession, StampCounter, error_text

_FLUSHING = threading.Lock()

# The server refused the stored packet itself: make it again from what was written.
_REMAKE = frozenset(
    (
        errors.BAD_REQUEST,
        errors.POW_INSUFFICIENT,
        errors.POW_INVALID,
        errors.POW_EXPIRED,
        errors.POW_MISMATCH,
        errors.POW_REPLAYED,
    )
)


@dataclass
class QueueResult:
    """What `queue` did: the Outbox row, and whether the stamp was minted already. A send
    to several recipients cut short by the server going away also says who got it already
    (`sent`) and who will not (`failed`: address → why)."""

    id: int
    stamped: bool
    sent: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


@dataclass
class FlushResult:
    sent: list[SendResult] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # words for people, one per problem
    reached: list[str] = field(default_factory=list)  # every recipient sent to now


def seal_offline(
    session: AccountSession,
    outgoing: Outgoing,
    *,
    minter: Minter,
    progress: Callable[[MintStatus], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> dict[str, Any] | None:
    """The sealed, stamped packet, made without the server; None if a pinned key is
    missing (it is then made at flush time)."""
    recipient = outgoing.recipient()

    def key_for(email: str) -> pgp.PublicKey:
        key = session.contacts.get(normalize_address(email))
        if key is None:
            raise LocalError(f"no pinned key for {email}")
        return key

    try:
        packet = seal_outgoing(
            outgoing,
            sender=session.address,
            sign_with=session.key() if outgoing.sign else None,
            key_for=key_for,
        )
    except LocalError:
        if outgoing.encrypt and session.contacts.get(recipient) is None:
            return None
        raise
    bits = session.store.difficulty(session.account.name) or DEFAULT_DIFFICULTY
    return stamp_packet(packet, bits=bits, minter=minter, progress=progress, cancel=cancel)


def queue(
    session: AccountSession,
    outgoing: Outgoing,
    *,
    minter: Minter,
    progress: Callable[[MintStatus], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    on_stamp: StampCounter | None = None,
) -> QueueResult:
    """Put `outgoing` in the Outbox, stamped if it can be sealed offline (for several
    recipients, one packet and stamp each)."""
    if len(outgoing.recipients()) > 1:
        row, stamped = fanout.queue_all(
            session, outgoing, minter=minter, progress=progress, cancel=cancel, on_stamp=on_stamp
        )
        return QueueResult(row, stamped)
    packet = seal_offline(session, outgoing, minter=minter, progress=progress, cancel=cancel)
    row = session.store.queue(session.account.name, outgoing, packet)
    return QueueResult(row, packet is not None)


def _submit(
    session: AccountSession, client: Client, outgoing: Outgoing, packet: dict[str, Any] | None
) -> SendResult:
    minter = Minter(processes=1)
    if packet is not None:
        bits = difficulty_of(client.greeting)

        def restamp(target: dict[str, Any]) -> None:
            stamp_packet(target, bits=bits, minter=minter)

        try:
            result = client.send_packet(packet, restamp=restamp)
        except MMTPError as exc:
            if exc.code not in _REMAKE:
                raise
        else:
            session.keep_sent(outgoing, result)
            return result
    return session.send(client, outgoing, minter=minter)


def flush(session: AccountSession) -> FlushResult:
    """Send what waits in the Outbox. Raises LocalError/OSError when the server still does
    not answer (everything stays queued); a message the server refuses stays queued with
    the reason and the others go on."""
    result = FlushResult()
    if not session.store.outbox(session.account.name):
        return result
    # The periodic check and a fetch may both flush: one at a time, or a packet could go
    # out twice (the server would only call it a duplicate, but the states would race).
    if not _FLUSHING.acquire(blocking=False):
        return result
    try:
        return _flush(session, result)
    finally:
        _FLUSHING.release()


def _flush(session: AccountSession, result: FlushResult) -> FlushResult:
    waiting = session.store.outbox(session.account.name)
    if not waiting:
        return result
    with session.connected() as client:
        for item in waiting:
            if item.recipients:
                _flush_several(session, client, item, result)
                continue
            try:
                sent = _submit(session, client, item.outgoing, item.packet)
            except (MMTPError, LocalError) as exc:
                text = error_text(exc)
                session.store.queue_failed(item.id, text)
                subject = item.outgoing.subject or "(no subject)"
                result.failed.append(f"{subject}: not sent yet: {text}")
                if not client.is_connected():
                    raise
                continue
            session.store.unqueue(item.id)
            result.sent.append(sent)
            result.reached.append(str(sent.packet["recipient"]))
    return result


def _flush_several(
    session: AccountSession, client: Client, item: Queued, result: FlushResult
) -> None:
    failed_before = {e.address for e in item.recipients if e.state == FAILED}
    waiting = {e.address for e in item.waiting()}
    subject = item.outgoing.subject or "(no subject)"
    sent: list[SendResult] = []
    try:
        sent = fanout.flush_one(session, client, item, minter=Minter(processes=1))
    except fanout.Gone as exc:
        session.store.queue_failed(item.id, str(exc))
        raise exc.cause from None
    except (MMTPError, LocalError) as exc:  # it could not even be sealed: it waits
        session.store.queue_failed(item.id, error_text(exc))
        result.failed.append(f"{subject}: not sent yet: {error_text(exc)}")
        if not client.is_connected():
            raise
    finally:
        result.reached += [
            e.address for e in item.recipients if e.state == SENT and e.address in waiting
        ]
    result.sent += sent
    for entry in item.recipients:
        if entry.state == FAILED and entry.address not in failed_before:
            result.failed.append(f"{subject}: not sent to {entry.address}: {entry.error}")
        elif entry.state == QUEUED and entry.error:
            result.failed.append(f"{subject}: not sent yet to {entry.address}: {entry.error}")


def take_back(session: AccountSession, item: Queued) -> None:
    """Take an entry out of the Outbox into Drafts (nothing is lost; for several
    recipients, the draft holds only those not sent to yet)."""
    outgoing = fanout.take_back(session, item) if item.recipients else item.outgoing
    session.store.save_draft(session.account.name, outgoing)
    session.store.unqueue(item.id)


def unreachable(exc: BaseException) -> bool:
    """Is this failure "the server cannot be reached" (queue it), not a refusal?"""
    if isinstance(exc, OSError):
        return True
    return isinstance(exc, LocalError) and str(exc).startswith("cannot connect")


def send_or_queue(
    session: AccountSession,
    outgoing: Outgoing,
    *,
    minter: Minter,
    on_step: Callable[[Step], None] | None = None,
    progress: Callable[[MintStatus], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    on_stamp: StampCounter | None = None,
) -> SendResult | Outcomes | QueueResult:
    """Send now through the one pipeline; when the server cannot be reached, queue it in
    the Outbox instead (stamped here, so the wait later is short).

    Several recipients (SPEC §9): {recipient: SendResult or the error that stopped it}, as
    `AccountSession.send` answers; a QueueResult when the server could not be reached, or
    went away before every recipient was sent to (the Outbox then holds the rest)."""
    context = session.connected()
    try:
        client = context.__enter__()
    except (LocalError, OSError) as exc:
        if not unreachable(exc):
            raise
        if on_step is not None:
            on_step(Step.STAMP)
        return queue(
            session,
            outgoing,
            minter=minter,
            progress=progress,
            cancel=cancel,
            on_stamp=on_stamp,
        )
    try:
        if len(outgoing.recipients()) > 1:
            outcomes, row, entries = fanout.send_now(
                session,
                client,
                outgoing,
                minter=minter,
                on_step=on_step,
                progress=progress,
                cancel=cancel,
                on_stamp=on_stamp,
            )
            if row is None:
                return outcomes
            return QueueResult(
                row,
                all(fanout.stamped(e) for e in entries if e.state == QUEUED),
                sent=[e.address for e in entries if e.state == SENT],
                failed={e.address: e.error for e in entries if e.state == FAILED},
            )
        return session.send(
            client, outgoing, minter=minter, on_step=on_step, progress=progress, cancel=cancel
        )
    finally:
        context.__exit__(None, None, None)
