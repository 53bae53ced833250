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
from .message import seal
from .minter import Minter, MintStatus
from .outgoing import Outgoing

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
    )


def stamp_packet(
    packet: dict[str, Any],
    *,
    bits: int,
    minter: Minter,
    progress: Callable[[MintStatus], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Mint the packet's stamp (``meta.hashcashToken``) at ``bits``; MintCancelled on cancel."""
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
