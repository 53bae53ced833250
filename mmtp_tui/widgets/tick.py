"""A checkbox that says its state by shape: "[✓]" when on, "[ ]" when off (Textual's own
shows "X" in both states, only its colour changes)."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Checkbox


class Tick(Checkbox):
    @property
    def _button(self) -> Content:
        style = self.get_visual_style("toggle--label")
        return Content.assemble(("[", style), ("✓" if self.value else " ", style), ("]", style))
