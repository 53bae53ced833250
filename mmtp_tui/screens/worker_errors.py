"""Words for a worker's error that its own handler did not foresee.

Workers run with exit_on_error=False (a failed fetch must not end the app), and Textual does
not pass a worker's state to the node's parents: without a handler on the node that started
it, such an error vanished, leaving "getting mail…" or the sending bar on screen for good."""

from __future__ import annotations

from collections.abc import Callable

from textual.worker import Worker, WorkerState

from ..session import error_text

# What each worker group does, for the notice.
_DOING = {
    "fetch": "getting mail",
    "check": "checking for new mail",
    "send": "sending",
    "keys": "working on the key",
    "keys-check": "checking the key's registration",
    "setup": "setting up the account",
    "open": "opening the attachment",
    "delete-unreadable": "deleting the unreadable message",
}


def unforeseen(event: Worker.StateChanged) -> str | None:
    """The notice for a worker that ended in error; None for any other state change."""
    worker = event.worker
    if event.state is not WorkerState.ERROR or worker.error is None:
        return None
    doing = _DOING.get(worker.group, "working in the background")
    return (
        f"Something unexpected went wrong while {doing}: {error_text(worker.error)}. "
        "Try again; if it happens again, please report these words."
    )


class SaysWorkerErrors:
    """For a screen whose workers' unforeseen errors it undoes and says in `worker_failed`."""

    # Each screen's own: undo its busy state and say `words` (declared, not defined here,
    # so that every screen method lives in one module).
    worker_failed: Callable[[str], None]

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        words = unforeseen(event)
        if words is not None:
            self.worker_failed(words)
