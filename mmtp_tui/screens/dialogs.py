"""Small modal questions: a passphrase, yes/no, one line of text, a choice.

Questions and choices often quote addresses, paths or server words: shown as plain text."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Button, Input, Label, OptionList
from textual.widgets.option_list import Option

from ..attachments import complete_path
from ..plain import printable


class PromptScreen(ModalScreen[str | None]):
    """One line of text; Enter accepts, Esc cancels (None)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="dialog.cancel")
    ]

    def __init__(
        self,
        question: str,
        value: str = "",
        *,
        password: bool = False,
        placeholder: str = "",
        suggester: Suggester | None = None,
    ) -> None:
        super().__init__()
        self.question, self.value, self.password, self.placeholder = (
            question,
            value,
            password,
            placeholder,
        )
        self.suggester = suggester

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(
                printable(self.question, newlines=True), classes="dialog-question", markup=False
            )
            yield Input(
                self.value,
                password=self.password,
                placeholder=self.placeholder,
                suggester=self.suggester,
                id="prompt-input",
            )
            yield Label("Enter accepts · Esc cancels", classes="dialog-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class PathSuggester(Suggester):
    """Completes a file path as it is typed (→ or End accepts)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        return complete_path(value)


class PassphraseScreen(PromptScreen):
    def __init__(self, question: str) -> None:
        super().__init__(question, password=True, placeholder="passphrase")


class NewPassphraseScreen(ModalScreen[str | None]):
    """A new passphrase typed twice; Enter in the second field accepts when both match."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="dialog.cancel")
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(
                printable(self.question, newlines=True), classes="dialog-question", markup=False
            )
            yield Input(password=True, placeholder="new passphrase", id="new-passphrase")
            yield Input(password=True, placeholder="the same again", id="confirm-passphrase")
            yield Label("", id="passphrase-problem", markup=False)
            yield Label("Enter accepts · Esc cancels", classes="dialog-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "new-passphrase":
            self.query_one("#confirm-passphrase", Input).focus()
            return
        new = self.query_one("#new-passphrase", Input).value
        if event.value != new:
            self.query_one("#passphrase-problem", Label).update(
                "The two passphrases differ: type them again."
            )
            self.query_one("#confirm-passphrase", Input).value = ""
            return
        self.dismiss(new)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """Yes or no: y / Enter on Yes, n / Esc for no."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes", id="dialog.yes"),
        Binding("n,escape", "answer(False)", "No", id="dialog.no"),
    ]

    def __init__(self, question: str, *, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.question, self.yes, self.no = question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(
                printable(self.question, newlines=True), classes="dialog-question", markup=False
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes} (y)", variant="primary", id="yes")
                yield Button(f"{self.no} (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class ChoiceScreen(ModalScreen[str | None]):
    """Pick one of a few options (ids); Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="dialog.cancel")
    ]

    def __init__(self, question: str, choices: list[tuple[str, str]]) -> None:
        super().__init__()
        self.question, self.choices = question, choices

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(
                printable(self.question, newlines=True), classes="dialog-question", markup=False
            )
            yield OptionList(
                *[Option(printable(label), id=cid) for cid, label in self.choices], markup=False
            )

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
