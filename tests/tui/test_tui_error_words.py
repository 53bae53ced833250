"""Errors reach the user as what went wrong and what to do: never a traceback, never silence."""

from __future__ import annotations

import pytest
from test_tui_app import SIZE, settle
from test_tui_bugs import alice_app
from test_tui_compose import notes, start_alice


@pytest.mark.parametrize(
    ("content", "why"),
    [(b"\xff\xfe not text", "not a text file"), (b"not a key at all", "not a usable key")],
)
async def test_an_unreadable_key_file_is_named_with_what_to_do(server, tui_settings, content, why):
    """A damaged key file crashed the app with a traceback (UnicodeDecodeError, or the
    LocalError of the passphrase check on the UI thread) at F, sending or the Keys pane."""
    app = alice_app(server, tui_settings)
    async with app.run_test(size=SIZE) as pilot:
        main = await start_alice(app, pilot)
        await settle(app, pilot)
        path = main.session.keystore.private_path(main.session.address)
        main.session._key = None
        path.write_bytes(content)
        await pilot.press("F")
        await settle(app, pilot)
        assert app.is_running
        said = [note for note in notes(app) if str(path) in note]
        assert said and why in said[-1] and "K, then g" in said[-1], notes(app)
        await pilot.press("K")  # the Keys pane opens on it too
        await settle(app, pilot)
        assert app.is_running and type(app.screen).__name__ == "KeysScreen"
