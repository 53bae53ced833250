"""The live HashCash bar: tries so far, hash rate, estimated time left; Esc cancels."""

from __future__ import annotations

from textual.containers import Vertical
from textual.widgets import Label, ProgressBar


def human(n: float) -> str:
    for unit in ("", "k", "M", "G"):
        if abs(n) < 1000:
            return f"{n:.0f}{unit}" if unit == "" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}T"


class SendProgress(Vertical):
    def compose(self):
        yield Label("", id="send-stage")
        yield ProgressBar(total=100, show_eta=False, id="send-bar")

    def stage(self, text: str) -> None:
        self.query_one("#send-stage", Label).update(text)

    def mint(self, tries: int, expected: int, rate: float, eta: float | None) -> None:
        bar = self.query_one("#send-bar", ProgressBar)
        # Tries are open-ended (a stamp may take more than the average): show the share of
        # the expected work, capped below 100% until the stamp is found.
        bar.update(total=expected, progress=min(tries, int(expected * 0.99)))
        left = "?" if eta is None else ("<1 s" if eta < 1 else f"~{eta:.0f} s")
        self.stage(
            f"HashCash: {human(tries)} tries of ~{human(expected)} · {human(rate)}/s · "
            f"{left} left · Esc cancels"
        )

    def finish(self) -> None:
        bar = self.query_one("#send-bar", ProgressBar)
        bar.update(total=100, progress=100)
