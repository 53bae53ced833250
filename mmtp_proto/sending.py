"""The one way a message goes out: seal (encrypt, sign), stamp, submit.

Both the client library (:meth:`mmtp_proto.client.Client.send_mail`) and the TUI send through
:func:`send_outgoing`; they differ only in what they pass in: how a recipient's key is found
(a directory lookup, or pinned contacts), which :class:`~mmtp_proto.minter.Minter` mints
(in-process for a script, a child process for a UI), and where progress goes.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from . import pgp
from .actions.greeting import Greeting
from .address import domain_of, normalize_address
from .canonical import canonical_json
from .errors import LocalError, MMTPError
from .limits import MAX_MINT_BITS
from .message import seal
from .minter import Minter, MintStatus
from .outgoing import Outgoing, checked_notify
from .packet import build_packet, new_message_id, signature_input_of

KeyFor = Callable[[str], pgp.PublicKey]
"""The key to encrypt to for a (normalized) recipient; raises LocalError when there is none."""


class Step(enum.Enum):
    SEAL = "seal"
    STAMP = "stamp"
    SUBMIT = "submit"


@dataclass
class SendResult:
    message_id: str
    duplicate: bool
    encrypted: bool
    signed: bool
    signature_verified: bool
    packet: dict[str, Any]
    # SPEC §8.5: the home server queued it for another domain's server (not yet delivered).
    queued: bool = False


class Submitter(Protocol):
    """What submitting needs of a connection: the greeting, and SEND with safe retries."""

    @property
    def greeting(self) -> dict[str, Any]: ...

    def send_packet(
        self,
        packet: dict[str, Any],
        *,
        retries: int = 2,
        restamp: Callable[[dict[str, Any]], None] | None = None,
    ) -> SendResult: ...


def difficulty_of(greeting: dict[str, Any]) -> int:
    """The stamp bits a greeting asks for (the typed Greeting's fallback when it says none)."""
    return Greeting.from_response(greeting).difficulty


def seal_outgoing(
    outgoing: Outgoing,
    *,
    sender: str,
    sign_with: pgp.PrivateKey | None,
    key_for: KeyFor,
) -> dict[str, Any]:
    """The packet for ``outgoing``, without its stamp. ``sign_with`` is used only when the
    message asks to be signed, ``key_for`` only when it asks to be encrypted."""
    recipient = outgoing.recipient()
    return seal(
        sender=sender,
        recipient=recipient,
        content=outgoing.content(),
        encrypt_to=[key_for(recipient)] if outgoing.encrypt else None,
        sign_with=sign_with if outgoing.sign else None,
        type=outgoing.type,
        in_reply_to=outgoing.in_reply_to,
        references=outgoing.references or None,
        notify=outgoing.notify,
    )


def stamp_packet(
    packet: dict[str, Any],
    *,
    bits: int,
    minter: Minter,
    progress: Callable[[MintStatus], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Mint the packet's stamp (``meta.hashcashToken``) at ``bits``; MintCancelled on cancel.
    LocalError when ``bits`` is more than this client mints (limits.MAX_MINT_BITS)."""
    if bits > MAX_MINT_BITS:
        raise LocalError(
            f"the server of {domain_of(packet['recipient'])} asks for a {bits}-bit stamp, "
            f"more work than this client does (at most {MAX_MINT_BITS} bits, a minute or two; "
            f"each bit more doubles it). Not sent; ask that server's operator to lower it."
        )
    started = time.monotonic()
    report = None
    if progress is not None:
        on_status = progress

        def report(tries: int) -> None:
            on_status(MintStatus(tries, bits, time.monotonic() - started))

    packet["meta"]["hashcashToken"] = minter.mint(
        packet["recipient"],
        bits,
        packet["verification"]["messageHash"],
        progress=report,
        cancel=cancel,
    )
    return packet


def send_outgoing(
    submitter: Submitter,
    outgoing: Outgoing,
    *,
    sender: str,
    sign_with: pgp.PrivateKey | None,
    key_for: KeyFor,
    minter: Minter,
    on_step: Callable[[Step], None] | None = None,
    progress: Callable[[MintStatus], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> SendResult:
    """Seal, stamp at the server's difficulty, and submit ``outgoing``.

    A stamp that expires before the server sees it is minted again by the same minter.
    Raises LocalError/MMTPError, and MintCancelled when ``cancel()`` turned true.
    """

    def step(which: Step) -> None:
        if on_step is not None:
            on_step(which)

    step(Step.SEAL)
    packet = seal_outgoing(outgoing, sender=sender, sign_with=sign_with, key_for=key_for)
    bits = difficulty_of(submitter.greeting)

    def restamp(target: dict[str, Any]) -> None:
        step(Step.STAMP)
        stamp_packet(target, bits=bits, minter=minter, progress=progress, cancel=cancel)
        step(Step.SUBMIT)

    restamp(packet)
    return submitter.send_packet(packet, restamp=restamp)


# ---------------------------------------------------------------------------- SPEC §9

Outcomes = dict[str, "SendResult | MMTPError | LocalError"]
"""Each recipient's outcome (SPEC §9): its SendResult, or the error that stopped it."""


class PolicySubmitter(Submitter, Protocol):
    def difficulty_for(self, domain: str) -> int:
        """The stamp bits a recipient on ``domain`` needs (POLICY, SPEC §8.4)."""
        ...


def _listed(addresses: list[str]) -> list[str]:
    return list(dict.fromkeys(normalize_address(a) for a in addresses if a.strip()))


def seal_for_all(
    outgoing: Outgoing,
    *,
    sender: str,
    sign_with: pgp.PrivateKey | None,
    key_for: KeyFor,
) -> dict[str, dict[str, Any]]:
    """One unstamped packet per recipient (To, Cc, then Bcc), sharing messageId and
    timestamp. To/Cc share one content (one ciphertext, to all of them and the sender);
    each Bcc recipient gets a content of its own, so nobody sees a Bcc key was used."""
    to, cc = _listed(outgoing.to), _listed(outgoing.cc)
    bcc = [a for a in _listed(outgoing.bcc) if a not in to and a not in cc]
    if not (to or cc or bcc):
        raise LocalError("who is it for? the message has no recipient")
    clear = outgoing.content()
    if len(to) + len(cc) + len(bcc) > 1:
        clear = {**clear, "to": to, "cc": cc}
    message_id, now = new_message_id(), int(time.time())
    notify = checked_notify(outgoing.notify)  # set after Outgoing was made, maybe
    own = [sign_with.public] if sign_with is not None else []

    def content_for(readers: list[str]) -> dict[str, Any]:
        if not outgoing.encrypt:
            return clear
        keys = [key_for(r) for r in readers] + own
        return {"encrypted": pgp.encrypt(canonical_json(clear), keys)}

    shared = content_for(to + cc) if to or cc else None
    packets: dict[str, dict[str, Any]] = {}
    for recipient in to + cc + bcc:
        content = shared if recipient in to or recipient in cc else content_for([recipient])
        assert content is not None
        packet = build_packet(
            sender=sender,
            recipient=recipient,
            content=content,
            type=outgoing.type,
            message_id=message_id,
            timestamp=now,
            in_reply_to=outgoing.in_reply_to,
            references=outgoing.references or None,
        )
        if notify is not None:
            packet["meta"]["notify"] = notify
        if outgoing.sign and sign_with is not None:
            packet["verification"]["signature"] = pgp.sign_detached(
                signature_input_of(packet), sign_with
            )
            packet["meta"]["signed"] = True
        packets[recipient] = packet
    return packets


def send_to_all(
    submitter: PolicySubmitter,
    outgoing: Outgoing,
    *,
    sender: str,
    sign_with: pgp.PrivateKey | None,
    key_for: KeyFor,
    minter: Minter,
    progress: Callable[[MintStatus], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Outcomes:
    """Seal once, then stamp and submit one packet per recipient; one recipient's failure
    never stops the others. A recipient whose key cannot be had (encrypted mail) fails alone:
    the others are sealed without it."""
    outcomes: Outcomes = {}
    wanted = outgoing.recipients()
    reachable: list[str] = []
    for address in wanted:
        try:
            normalized = normalize_address(address)
            if outgoing.encrypt:
                key_for(normalized)
            reachable.append(address)
        except (MMTPError, LocalError) as exc:
            outcomes[address.strip().lower()] = exc
    if not reachable:
        return outcomes
    keep = set(reachable)
    trimmed = Outgoing(**{**outgoing.__dict__})
    trimmed.to = [a for a in outgoing.to if a in keep]
    trimmed.cc = [a for a in outgoing.cc if a in keep]
    trimmed.bcc = [a for a in outgoing.bcc if a in keep]
    packets = seal_for_all(trimmed, sender=sender, sign_with=sign_with, key_for=key_for)
    for recipient, packet in packets.items():
        try:
            bits = submitter.difficulty_for(domain_of(recipient))

            def restamp(target: dict[str, Any], bits: int = bits) -> None:
                stamp_packet(target, bits=bits, minter=minter, progress=progress, cancel=cancel)

            restamp(packet)
            outcomes[recipient] = submitter.send_packet(packet, restamp=restamp)
        except (MMTPError, LocalError) as exc:
            outcomes[recipient] = exc
    return outcomes
