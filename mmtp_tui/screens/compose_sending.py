"""Compose's send pipeline: the worker thread (encrypt → sign → HashCash in niced child
processes → submit), the live progress bar fed by it, and the outcome in words.

Keys typed while a stamp is minted must still answer at once (issue 10). What keeps them
quick: the stamp is minted by ``Minter.interactive()`` (a core left for the event loop, the
children niced from their start and in a scheduling group of their own), the worker thread
only waits on the children's pipes (no polling, the GIL released), and the bar is updated
at most five times a second with messages that replace each other in the queue.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from textual import work
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input

from mmtp_proto.errors import LocalError, MMTPError
from mmtp_proto.hashcash import MintCancelled
from mmtp_proto.minter import Minter, MintStatus
from mmtp_proto.outgoing import Outgoing
from mmtp_proto.sending import Outcomes, SendResult, Step

from .. import headers, outbox
from ..session import AccountSession, error_text
from ..widgets.send_progress import SendProgress
from .worker_errors import SaysWorkerErrors

# Every core but one, niced children, five progress reports a second at most.
MINTER = Minter.interactive(progress_interval=0.2)

# The handlers keep the names they had when these messages were ComposeScreen's own.
_NAMESPACE = "compose_screen"

# For a type checker the mixin is the Screen it is mixed into; at run time a plain class, so
# Textual sees one Screen subclass.
_Base = Screen[bool] if TYPE_CHECKING else object


class ComposeSending(SaysWorkerErrors, _Base):
    """The sending half of :class:`~mmtp_tui.screens.compose.ComposeScreen` (a mixin for
    that Screen: it uses the screen's widgets, ``notify`` and ``dismiss``)."""

    session: AccountSession
    outgoing: Outgoing
    draft_id: int | None
    sending: bool
    closed: bool
    _cancel: threading.Event

    class StepStarted(Message, namespace=_NAMESPACE):
        def __init__(self, step: Step) -> None:
            super().__init__()
            self.step = step

    class Minting(Message, namespace=_NAMESPACE):
        def __init__(self, status: MintStatus) -> None:
            super().__init__()
            self.status = status

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, ComposeSending.Minting)

    class StampStarted(Message, namespace=_NAMESPACE):
        """The stamp for the n-th of several recipients is being minted."""

        def __init__(self, number: int, total: int) -> None:
            super().__init__()
            self.number = number
            self.total = total

    class Sent(Message, namespace=_NAMESPACE):
        def __init__(self, result: SendResult | Outcomes) -> None:
            super().__init__()
            self.result = result

    class SendFailed(Message, namespace=_NAMESPACE):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class SendCancelled(Message, namespace=_NAMESPACE):
        """`sent`: the recipients who had it before the cancel (several recipients)."""

        def __init__(self, sent: list[str]) -> None:
            super().__init__()
            self.sent = sent

    class Queued(Message, namespace=_NAMESPACE):
        """The server could not be reached: the message waits in the Outbox."""

        def __init__(self, result: outbox.QueueResult) -> None:
            super().__init__()
            self.result = result

    def _read_form(self) -> Outgoing:  # pragma: no cover - the screen has its own
        raise NotImplementedError

    def _sent_and_closed(self) -> None:
        """The message went out (or waits in the Outbox): its draft is no longer needed."""
        self.query_one("#progress", SendProgress).finish()
        self.closed = True
        if self.draft_id is not None:
            self.session.store.delete_draft(self.draft_id)

    def action_send(self) -> None:
        if self.sending:
            return
        outgoing = self._read_form()
        if not outgoing.recipients():
            self.notify("Who is it for? Fill in To.", severity="error")
            self.query_one("#to", Input).focus()
            return
        self.sending = True
        self._cancel.clear()
        progress = self.query_one("#progress", SendProgress)
        progress.display = True
        progress.which = ""
        progress.stage("Connecting…")
        outgoing.notify = getattr(getattr(self.app, "settings", None), "delivery_notify", None)
        self.send_worker(Outgoing.from_dict(outgoing.to_dict()))

    @work(thread=True, exclusive=True, exit_on_error=False, group="send")
    def send_worker(self, outgoing: Outgoing) -> None:
        post = self.post_message
        on_step = lambda step: post(self.StepStarted(step))  # noqa: E731
        progress = lambda status: post(self.Minting(status))  # noqa: E731
        try:
            result: SendResult | Outcomes | outbox.QueueResult
            if len(outgoing.recipients()) > 1:
                result = self._send_to_all(outgoing, on_step, progress)
            else:
                result = outbox.send_or_queue(
                    self.session,
                    outgoing,
                    minter=MINTER,
                    on_step=on_step,
                    progress=progress,
                    cancel=self._cancel.is_set,
                )
        except MintCancelled as exc:
            post(self.SendCancelled(list(getattr(exc, "sent", []))))
        except (MMTPError, LocalError, OSError, ValueError, RuntimeError) as exc:
            post(self.SendFailed(error_text(exc)))
        else:
            if isinstance(result, outbox.QueueResult):
                post(self.Queued(result))
            else:
                post(self.Sent(result))

    def _send_to_all(
        self,
        outgoing: Outgoing,
        on_step: Callable[[Step], None],
        progress: Callable[[MintStatus], None],
    ) -> Outcomes | SendResult | outbox.QueueResult:
        """Several recipients (SPEC §9): one packet each; the Outbox keeps the message, or
        the recipients still unsent, when the server cannot be reached or goes away."""
        post = self.post_message
        return outbox.send_or_queue(
            self.session,
            outgoing,
            minter=MINTER,
            on_step=on_step,
            progress=progress,
            cancel=self._cancel.is_set,
            on_stamp=lambda n, total: post(self.StampStarted(n, total)),
        )

    def on_compose_screen_queued(self, message: Queued) -> None:
        self._sent_and_closed()
        self.notify(
            queued_words(message.result),
            title="Queued",
            severity="warning",
            timeout=10,
        )
        self.dismiss(True)

    def on_compose_screen_step_started(self, message: StepStarted) -> None:
        words = {
            Step.SEAL: "Encrypting and signing…" if self.outgoing.encrypt else "Signing…",
            Step.STAMP: "HashCash…",
            Step.SUBMIT: "Sending…",
        }
        self.query_one("#progress", SendProgress).stage(words[message.step])

    def on_compose_screen_stamp_started(self, message: StampStarted) -> None:
        self.query_one("#progress", SendProgress).counting(message.number, message.total)

    def on_compose_screen_minting(self, message: Minting) -> None:
        if not self._cancel.is_set():
            self.query_one("#progress", SendProgress).mint(message.status)

    def on_compose_screen_sent(self, message: Sent) -> None:
        result = message.result
        if isinstance(result, dict):
            self._report_outcomes(result)
            return
        self._sent_and_closed()
        how = ", ".join(
            w for w, on in (("encrypted", result.encrypted), ("signed", result.signed)) if on
        )
        self.notify(f"Sent to {result.packet['recipient']} ({how or 'in clear'}).", markup=False)
        self.dismiss(True)

    def _report_outcomes(self, outcomes: Outcomes) -> None:
        """Each recipient's outcome in words; a failure for one never hides the others'.
        All sent: the compose closes. Some failed: it stays, holding only those, to retry."""
        words, failed = outcome_words(outcomes)
        notify = self.notify
        if len(failed) == len(outcomes):
            self._stopped()
            notify(words, title="Send failed", severity="error", timeout=20, markup=False)
            return
        if failed:
            self._stopped()
            keep = {a.lower() for a in failed}
            for field in ("to", "cc", "bcc"):
                widget = self.query_one(f"#{field}", Input)
                left = [a for a in headers.split_addresses(widget.value) if a.lower() in keep]
                widget.value = ", ".join(left)
            notify(words, title="Partly sent", severity="warning", timeout=20, markup=False)
            return
        self._sent_and_closed()
        notify(words, markup=False)
        self.dismiss(True)

    def _stopped(self) -> None:
        self.sending = False
        self.query_one("#progress", SendProgress).display = False

    def on_compose_screen_send_failed(self, message: SendFailed) -> None:
        self._stopped()
        self.notify(
            f"Not sent: {message.text}",
            title="Send failed",
            severity="error",
            timeout=15,
            markup=False,
        )

    def worker_failed(self, words: str) -> None:
        """The send worker failed unexpectedly: the bar goes, the message stays to retry."""
        self._stopped()
        self.notify(f"Not sent: {words}", title="Send failed", severity="error", timeout=20)

    def on_compose_screen_send_cancelled(self, message: SendCancelled) -> None:
        self._stopped()
        if not message.sent:
            self.notify("Sending cancelled; the message is still here.")
            return
        # Some had it already: they leave the fields, so sending again reaches only the rest.
        self._keep_only_unsent(message.sent)
        self.notify(
            f"Sending cancelled after it went to {', '.join(message.sent)}: they are taken off "
            "the recipients; the message is still here for the others.",
            severity="warning",
            timeout=20,
        )

    def _keep_only_unsent(self, sent: list[str]) -> None:
        done = {a.lower() for a in sent}
        for field in ("to", "cc", "bcc"):
            widget = self.query_one(f"#{field}", Input)
            left = [a for a in headers.split_addresses(widget.value) if a.lower() not in done]
            widget.value = ", ".join(left)


def outcome_words(outcomes: Outcomes) -> tuple[str, list[str]]:
    """Plain words for a send to several recipients: who got it, who did not and why.
    Returns the words and the addresses that failed."""
    sent = [r for r, o in outcomes.items() if isinstance(o, SendResult)]
    failed = [r for r, o in outcomes.items() if not isinstance(o, SendResult)]
    lines = []
    if sent:
        queued = [r for r in sent if getattr(outcomes[r], "queued", False)]
        lines.append(f"Sent to {', '.join(sent)}.")
        if queued:
            lines.append(f"(Waiting at the server for another domain: {', '.join(queued)}.)")
    for recipient in failed:
        outcome = outcomes[recipient]
        assert not isinstance(outcome, SendResult)
        lines.append(f"Not sent to {recipient}: {error_text(outcome)}")
    return "\n".join(lines), failed


def queued_words(result: outbox.QueueResult) -> str:
    """The notice for a message the Outbox took: who got it already, who will not, and that
    the rest goes out when the server answers. Addresses are plain text (notify takes no
    markup from us)."""
    how = "stamped; it" if result.stamped else "it"
    if not result.sent and not result.failed:
        return (
            f"The server cannot be reached: the message waits in the Outbox ({how} goes out "
            "when the server answers)."
        )
    parts = []
    if result.sent:
        parts.append(f"Sent to {', '.join(result.sent)}.")
    if result.failed:
        parts.append(f"Not sent to {', '.join(result.failed)}.")
    parts.append(
        "The server went away before the rest: they wait in the Outbox and go out when the "
        "server answers."
    )
    return " ".join(parts)
