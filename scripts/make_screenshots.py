"""Regenerate screenshots/*.svg by driving the real app against a real local server.

    python scripts/make_screenshots.py [--size 100x30]

Everything (server, config, keys, mail store) lives in a temporary directory. It takes
seconds: Ed25519 keys (RSA-4096 generation took minutes), a low server difficulty for the
messages sent to fill the mailbox, and the HashCash bar shown at a fixed point instead of
waiting for a real 24-bit stamp (which is what made the old script slow).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "screenshots"


async def shoot(width: int, height: int) -> None:
    from textual.widgets import Input, TextArea

    from mmtp_proto.config import ServerConfig
    from mmtp_proto.keystore import Keystore
    from mmtp_proto.known_servers import KnownServers
    from mmtp_proto.minter import Minter, MintStatus
    from mmtp_proto.outgoing import Outgoing
    from mmtp_proto.server import Server
    from mmtp_tui import config
    from mmtp_tui.app import MailApp
    from mmtp_tui.mailstore import MailStore
    from mmtp_tui.screens.compose import ComposeScreen
    from mmtp_tui.screens.keys import KeysScreen
    from mmtp_tui.screens.main import MainScreen
    from mmtp_tui.session import AccountSession, default_keystore
    from mmtp_tui.widgets.send_progress import SendProgress

    tmp = Path(os.environ["HOME"])
    server = Server(
        ServerConfig(
            host="127.0.0.1",
            port=0,
            secure_port=0,
            data_dir=tmp / "server",
            domains=["localhost"],
            difficulty=12,  # the example mail goes out at once
        )
    ).start()
    try:
        host, port = server.plain_address
        _, secure = server.tls_address
        known = KnownServers(tmp / "known")
        known.pin(host, secure, server.tls_fingerprint)

        def account(name: str) -> config.Account:
            return config.Account(
                name=name,
                address=f"({name})%(localhost)",
                display_name=name.title(),
                host=host,
                port=port,
                secure_port=secure,
            )

        bob = AccountSession(
            account("bob"),
            store=MailStore(tmp / "bob.sqlite3"),
            keystore=Keystore(tmp / "bob-keys"),
            known_servers=known,
        )
        bob.generate_key("ed25519", None)
        bob.register()
        settings = config.Settings(path=tmp / "tui.toml")
        settings.add_account(account("alice"))
        app = MailApp(settings, known_servers=known)
        alice = AccountSession(
            settings.account, store=app.store, keystore=default_keystore(), known_servers=known
        )
        alice.generate_key("ed25519", None)
        alice.register()

        def send(session, to, subject, body, **kw):
            with session.connected() as client:
                outgoing = Outgoing(to=[to], subject=subject, body=body, **kw)
                return session.send(client, outgoing, minter=Minter(processes=1))

        first = send(alice, "(bob)%(localhost)", "Project plans", "The plan is ready.")
        send(
            bob,
            "(alice)%(localhost)",
            "Re: Project plans",
            "Looks good to me.\n\nShall we meet on Friday?",
            type="REPLY",
            in_reply_to=first.message_id,
            references=[first.message_id],
        )
        send(bob, "(alice)%(localhost)", "Welcome to MMTP", "Encrypted and signed, always.")

        async with app.run_test(size=(width, height)) as pilot:
            while not isinstance(app.screen, MainScreen):
                await pilot.pause(0.05)
            await app.workers.wait_for_complete()
            await pilot.pause(0.3)
            app.clear_notifications()
            await pilot.press("down")
            await pilot.pause(0.2)
            app.save_screenshot(str(OUT / "main.svg"))
            await pilot.press("enter")
            await pilot.pause(0.3)
            app.save_screenshot(str(OUT / "reader.svg"))
            await pilot.press("c")
            while not isinstance(app.screen, ComposeScreen):
                await pilot.pause(0.05)
            compose = app.screen
            compose.query_one("#to", Input).value = "(bob)%(localhost)"
            compose.query_one("#subject", Input).value = "Friday"
            compose.query_one("#body", TextArea).text = "Friday at ten works.\n"
            # The bar as a 22-bit stamp shows it a third of the way (a real mint would
            # take as long as the stamp does; the widget is what is shown).
            progress = compose.query_one("#progress", SendProgress)
            progress.display = True
            progress.stage("HashCash…")
            progress.mint(MintStatus(tries=1_400_000, bits=22, elapsed=2.1))
            await pilot.pause(0.3)
            app.save_screenshot(str(OUT / "compose-hashcash.svg"))
            compose.closed = True  # not kept as a draft: it is a picture
            await pilot.press("escape")
            while not isinstance(app.screen, MainScreen):
                await pilot.pause(0.05)
            app.clear_notifications()
            await pilot.press("K")
            while not isinstance(app.screen, KeysScreen):
                await pilot.pause(0.05)
            await app.workers.wait_for_complete()
            await pilot.pause(0.3)
            app.save_screenshot(str(OUT / "keys.svg"))
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="100x30", help="terminal size, e.g. 80x24")
    args = parser.parse_args()
    width, height = (int(n) for n in args.size.split("x"))
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HOME"] = tmp
        for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
            os.environ[var] = str(Path(tmp) / var.lower())
        asyncio.run(shoot(width, height))
    print(f"screenshots written to {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
