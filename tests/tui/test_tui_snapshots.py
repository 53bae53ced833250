"""Snapshots of screens that need no server (fixed data; the cursor does not blink in tests)."""

from __future__ import annotations

from mmtp_tui import config
from mmtp_tui.app import MailApp


def first_run_app(monkeypatch) -> MailApp:
    for var in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(var, "alice")
    return MailApp(config.Settings(path=config.default_config_path()))


def test_setup_screen_snapshot(snap_compare, monkeypatch):
    assert snap_compare(first_run_app(monkeypatch), terminal_size=(80, 24))


def test_help_screen_snapshot(snap_compare, monkeypatch):
    assert snap_compare(first_run_app(monkeypatch), press=["f1"], terminal_size=(80, 24))
