"""Issue 8: compose asks for the delivery reports `delivery_reports` names (tui.toml). The
states they drive are tested across two domains in tests/test_delivery_states.py."""

from __future__ import annotations

from test_tui_app import SIZE
from test_tui_compose import compose_screen, start_alice, wait_until
from textual.widgets import Input, TextArea

from mmtp_tui.app import MailApp


async def test_compose_asks_for_the_reports_of_the_setting(server, make_session, tui_settings):
    """Compose puts `delivery_reports` into meta.notify, under the signature."""
    bob_address = "(bob)%(localhost)"
    bob = make_session(server, "bob", bob_address)
    settings = tui_settings(server)
    settings.delivery_reports = "success"
    app = MailApp(settings, known_servers=bob.known_servers)
    async with app.run_test(size=SIZE) as pilot:
        main = await start_alice(app, pilot)
        await pilot.press("c")
        compose = await compose_screen(app, pilot)
        compose.query_one("#to", Input).value = bob_address
        compose.query_one("#subject", Input).value = "Tell me"
        compose.query_one("#body", TextArea).text = "when it arrives"
        await pilot.press("ctrl+s")
        store = main.session.store
        await wait_until(pilot, lambda: bool(store.folder("alice", "Sent")))
        (copy,) = store.folder("alice", "Sent")
        assert copy.packet["meta"]["notify"] == ["success"]
        assert copy.signature == "verified"
