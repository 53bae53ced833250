"""The main screen and the mail store are put together from modules named for what they
hold: every method lives in exactly one of them (Textual calls an `on_*` handler of each
class in the MRO, so a copy in two mixins would run twice)."""

from __future__ import annotations

from pathlib import Path

from mmtp_tui.mailstore import MailStore
from mmtp_tui.screens.main import MainScreen


def _defined_in(cls: type, stop: type) -> dict[str, list[str]]:
    owners: dict[str, list[str]] = {}
    for klass in cls.__mro__:
        if klass is stop:
            break
        for name, value in vars(klass).items():
            if not name.startswith("__") and (callable(value) or isinstance(value, property)):
                owners.setdefault(name, []).append(klass.__name__)
    return owners


def test_each_main_screen_method_lives_in_one_module():
    from textual.screen import Screen

    owners = _defined_in(MainScreen, Screen)
    twice = {n: o for n, o in owners.items() if len(o) > 1}
    assert twice == {}


def test_each_mail_store_method_lives_in_one_module():
    twice = {n: o for n, o in _defined_in(MailStore, object).items() if len(o) > 1}
    assert twice == {}


def test_no_split_module_is_long():
    root = Path(__file__).resolve().parents[2] / "mmtp_tui"
    paths = [*root.joinpath("mailstore").glob("*.py"), *root.joinpath("screens").glob("*.py")]
    long = {p.name: n for p in paths if (n := len(p.read_text().splitlines())) > 400}
    long.pop("compose.py", None)  # another change splits it
    assert long == {}
