"""One-of-several choices that say their state by shape, not only by colour.

`Choice` draws "(●)" when chosen and "( )" when not (Textual's radio button shows the same
glyph in both states, only its colour changes). In a `ChoiceSet` the arrow keys choose at
once, as radio buttons do elsewhere: moving the highlight without choosing was a trap."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.content import Content
from textual.style import Style
from textual.widgets import RadioButton, RadioSet


class Choice(RadioButton):
    @property
    def _button(self) -> Content:
        style = self.get_visual_style("toggle--label")
        mark = "●" if self.value else " "
        return Content.assemble(
            ("(", style),
            (mark, style + Style(bold=True) if self.value else style),
            (") ", style),
        )


class ChoiceSet(RadioSet):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("down,right", "choose(1)", "Next choice", show=False),
        Binding("up,left", "choose(-1)", "Previous choice", show=False),
    ]

    def action_choose(self, step: int) -> None:
        if step > 0:
            self.action_next_button()
        else:
            self.action_previous_button()
        self.action_toggle_button()
