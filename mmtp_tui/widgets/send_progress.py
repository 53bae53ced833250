"""The live HashCash bar: tries so far, hash rate, estimated time left (elapsed time once
past the expected tries); Esc cancels."""

from __future__ import annotations

from rich.text import Text
from textual.containers import Vertical
from textual.widgets import Label, ProgressBar

from mmtp_proto.minter import MintStatus


def human(n: float) -> str:
    for unit in ("", "k", "M", "G"):
        if abs(n) < 1000:
            return f"{n:.0f}{unit}" if unit == "" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}T"


class SendProgress(Vertical):
    """Past tries and time of one stamp; with several recipients, which stamp it is."""

    # The stage line's width is the bar's, not its text's: a new text that fits on the line
    # as the old one did changes no size, and the screen is spared a layout pass (~10 ms of
    # CPU on a loaded machine) at every progress report while keys are being typed.
    DEFAULT_CSS = """
    SendProgress #send-stage {
        width: 100%;
    }
    """

    which = ""  # "stamp 2 of 3 · " while minting one stamp per recipient
    _shown = 0  # cells of the stage line now shown

    def compose(self):
        yield Label("", id="send-stage")
        yield ProgressBar(total=100, show_eta=False, id="send-bar")

    def counting(self, number: int, total: int) -> None:
        """The stamp for the `number`-th of `total` recipients is being minted."""
        self.which = f"stamp {number} of {total} · " if total > 1 else ""
        self.stage(f"HashCash: {self.which}starting…")

    def stage(self, text: str) -> None:
        label = self.query_one("#send-stage", Label)
        content = Text(text)
        width = label.size.width
        same_size = 0 < content.cell_len <= width and 0 < self._shown <= width
        self._shown = content.cell_len
        label.update(content, layout=not same_size)

    def mint(self, status: MintStatus) -> None:
        bar = self.query_one("#send-bar", ProgressBar)
        tries, expected = status.tries, status.expected
        if status.eta is not None:
            # Tries are open-ended (a stamp may take more than the average): show the share
            # of the expected work, capped below 100% until the stamp is found.
            bar.update(total=expected, progress=min(tries, int(expected * 0.99)))
            left = "<1 s" if status.eta < 1 else f"~{status.eta:.0f} s"
            text = (
                f"HashCash: {self.which}{human(tries)} tries of ~{human(expected)} · "
                f"{human(status.rate)}/s · {left} left · Esc cancels"
            )
        elif tries >= expected:
            # Past the average there is no honest estimate: a pulsing bar, time and rate.
            bar.update(total=None)
            text = (
                f"HashCash: {self.which}{human(tries)} tries, "
                f"past the ~{human(expected)} expected · "
                f"{human(status.rate)}/s · {status.elapsed:.0f} s so far · Esc cancels"
            )
        else:
            text = (
                f"HashCash: {self.which}starting · ~{human(expected)} tries expected · Esc cancels"
            )
        self.stage(text)

    def finish(self) -> None:
        bar = self.query_one("#send-bar", ProgressBar)
        bar.update(total=100, progress=100)
