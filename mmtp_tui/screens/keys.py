"""The keys pane: my key (fingerprint, algorithm, created, registered or not) and contacts'
pinned keys, with key-change warnings."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label, Static

from mmtp_proto.address import parse_address
from mmtp_proto.errors import LocalError, MMTPError

from .. import keymap
from ..bindings import bindings
from ..messages import (
    ContactFetched,
    JobFailed,
    KeyGenerated,
    KeyRegistered,
    RegistrationChecked,
    RegistrationUnknown,
    Stage,
)
from ..plain import printable, printable_text
from ..provisioning import generating_label
from ..session import AccountSession, error_text
from .dialogs import (
    ChoiceScreen,
    ConfirmScreen,
    NewPassphraseScreen,
    PassphraseScreen,
    PromptScreen,
)
from .worker_errors import SaysWorkerErrors


def local_server_text(host: str, port: int, secure_port: int, fingerprint: str) -> Text:
    """What another user of this machine needs to use the server this app runs."""
    text = Text()
    text.append("\nThis machine's server", style="bold")
    text.append(" (run by this app; other users choose 'Connect to a server'):\n")
    text.append(f"host {host}, port {port}, TLS port {secure_port}\n")
    text.append("TLS fingerprint ")
    text.append(fingerprint, style="bold")
    text.append("\n")
    return text


class KeysScreen(SaysWorkerErrors, Screen[None]):
    BINDINGS = bindings(keymap.KEYS)

    def __init__(self, session: AccountSession) -> None:
        super().__init__()
        self.session = session
        self.registered: str | bool | None = False  # False: not known yet

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="keys-body"):
            yield Label("[b]My key[/b]")
            yield Static("", id="my-key")
            yield Static("", id="key-status")
            yield Label("[b]Contacts' keys[/b] (pinned on first use)")
            yield DataTable(id="contacts", cursor_type="row")
            yield Static("", id="key-warnings")
            yield Static("", id="server-info")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.title = f"Keys — {self.session.address}"
        table = self.query_one("#contacts", DataTable)
        table.add_column("Address", key="email", width=24)
        table.add_column("Fingerprint", key="fp")
        table.add_column("Type", key="alg", width=8)
        self.refresh_view()
        table.focus()
        self.check_registration()

    def refresh_view(self) -> None:
        info = self.session.key_info()
        text = Text()
        if info is None:
            text.append("No key yet: g generates one.", style="yellow")
        else:
            text.append(f"{info.email}\n", style="bold")
            text.append(f"fingerprint {info.fingerprint}\n")
            text.append(f"{info.algorithm}, created {info.created}, ")
            text.append(
                "passphrase-protected" if info.protected else "NO passphrase",
                style="" if info.protected else "yellow",
            )
            text.append("\n")
            if self.registered is False:
                text.append("registration: checking…", style="dim")
            elif self.registered is None:
                text.append("NOT registered on the server: r registers it", style="bold yellow")
            elif self.registered == info.fingerprint:
                text.append("registered on the server ✓", style="bold green")
            else:
                text.append(
                    f"the server has ANOTHER key: {self.registered} (r replaces it)",
                    style="bold red",
                )
        self.query_one("#my-key", Static).update(printable_text(text))
        table = self.query_one("#contacts", DataTable)
        table.clear()
        changes = self.session.contacts.changes()
        for contact in self.session.contacts.all():
            mark = " ⚠" if contact.email in changes else ""
            # Text cells: a DataTable reads a str cell as markup.
            table.add_row(
                Text(printable(contact.email + mark)),
                Text(printable(contact.fingerprint)),
                Text(printable(contact.algorithm)),
                key=contact.email,
            )
        warnings = Text()
        for change in changes.values():
            warnings.append("⚠ " + change.text + "\n", style="bold red")
        self.query_one("#key-warnings", Static).update(printable_text(warnings))
        server = getattr(self.app, "local_server", None)
        info = server.info if server is not None else None
        block = self.query_one("#server-info", Static)
        block.display = info is not None
        if info is not None:
            block.update(
                local_server_text(info.host, info.port, info.secure_port, info.fingerprint)
            )

    def _selected_contact(self) -> str | None:
        table = self.query_one("#contacts", DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    # ------------------------------------------------------------------ workers

    @work(thread=True, exclusive=True, exit_on_error=False, group="keys-check")
    def check_registration(self) -> None:
        try:
            self.post_message(RegistrationChecked(self.session.registered_fingerprint()))
        except (MMTPError, LocalError, OSError) as exc:
            self.post_message(RegistrationUnknown(error_text(exc)))

    @work(thread=True, exclusive=True, exit_on_error=False, group="keys")
    def generate_worker(self, algorithm: str, passphrase: str) -> None:
        self.post_message(Stage(generating_label(algorithm)))
        try:
            previous = None
            if self.session.has_key():
                # A damaged key file has no key to hand over: the new one replaces it.
                with contextlib.suppress(LocalError):
                    previous = self.session.key().public.fingerprint
            key = self.session.generate_key(algorithm, passphrase or None)
            self.post_message(KeyGenerated(key.public.fingerprint, previous))
        except (MMTPError, LocalError, OSError, ValueError) as exc:
            self.post_message(JobFailed(error_text(exc)))

    @work(thread=True, exclusive=True, exit_on_error=False, group="keys")
    def register_worker(self) -> None:
        self.post_message(Stage("Registering the key…"))
        session = self.session
        try:
            registered = session.registered_fingerprint()
            if registered is None:
                fingerprint = session.register()
            elif registered == session.key().public.fingerprint:
                fingerprint = registered
            else:
                old = next(
                    (k for k in session.old_keys() if k.public.fingerprint == registered), None
                )
                if old is None:
                    raise LocalError(
                        f"the server has key {registered}, which is not in this key ring "
                        "(unlocked): it cannot be replaced from here"
                    )
                self.post_message(Stage("Proving the old key, registering the new one…"))
                fingerprint = session.replace_registered_key(old)
            self.post_message(KeyRegistered(fingerprint))
        except (MMTPError, LocalError, OSError, ValueError) as exc:
            self.post_message(JobFailed(error_text(exc)))

    @work(thread=True, exclusive=True, exit_on_error=False, group="keys")
    def fetch_worker(self, email: str) -> None:
        self.post_message(Stage(f"Fetching the key of {email}…"))
        try:
            _key, status = self.session.fetch_contact(email)
            self.post_message(ContactFetched(email, status))
        except (MMTPError, LocalError, OSError, ValueError) as exc:
            self.post_message(JobFailed(error_text(exc)))

    def _status(self, text: str = "", style: str = "bold") -> None:
        self.query_one("#key-status", Static).update(
            Text(printable(text, newlines=True), style=style)
        )

    def on_stage(self, message: Stage) -> None:
        self._status(message.text)

    def on_registration_checked(self, message: RegistrationChecked) -> None:
        self._status()
        self.registered = message.fingerprint
        self.refresh_view()

    def on_registration_unknown(self, message: RegistrationUnknown) -> None:
        self.registered = False
        self.refresh_view()
        self._status(f"Server not reachable: {message.text}", "yellow")

    def on_key_generated(self, message: KeyGenerated) -> None:
        self._status()
        self.refresh_view()
        if self.registered and self.registered == message.previous:
            self.app.push_screen(
                ConfirmScreen(
                    "New key made; the old one is kept in the key ring (old mail stays "
                    "readable).\n\nThe server still has the old key. Replace it with the new "
                    "one now (the old key proves it is you)?",
                    yes="Replace",
                ),
                lambda yes: self.register_worker() if yes else None,
            )
        elif self.registered in (None, False):
            self.notify("New key made. Press r to register it with the server.")
            self.check_registration()
        else:
            self.notify("New key made; the old one is kept in the key ring.")
            self.check_registration()

    def on_key_registered(self, message: KeyRegistered) -> None:
        self._status()
        self.notify(f"Registered: {message.fingerprint}")
        self.registered = message.fingerprint
        self.refresh_view()

    def on_contact_fetched(self, message: ContactFetched) -> None:
        self._status()
        if message.status == "changed":
            self.notify(
                "This contact's key has CHANGED: see the warning below.",
                severity="error",
                timeout=20,
            )
        else:
            self.notify(f"Contact key {message.status}.")
        self.refresh_view()

    def worker_failed(self, words: str) -> None:
        self.on_job_failed(JobFailed(words))

    def on_job_failed(self, message: JobFailed) -> None:
        self._status()
        self.notify(message.text, severity="error", timeout=10)

    # ------------------------------------------------------------------ actions

    def with_unlocked_key(self, then: Callable[[], None]) -> None:
        def unlocked() -> None:
            self.refresh_view()
            then()

        self.app.with_unlocked_key(self.session, unlocked)  # type: ignore[attr-defined]

    def action_generate(self) -> None:
        def chosen(algorithm: str | None) -> None:
            if not algorithm:
                return

            def with_passphrase(passphrase: str | None) -> None:
                if passphrase is not None:
                    self.generate_worker(algorithm, passphrase)

            self.app.push_screen(
                NewPassphraseScreen("Passphrase for the new key (empty: none):"),
                with_passphrase,
            )

        def ask() -> None:
            self.app.push_screen(
                ChoiceScreen(
                    "Generate a new key (the current one is kept in the key ring):",
                    [("rsa4096", "RSA-4096 (slow to make)"), ("ed25519", "Ed25519 (fast)")],
                ),
                chosen,
            )

        self.with_unlocked_key(ask) if self.session.has_key() else ask()

    def action_change_passphrase(self) -> None:
        try:
            protected = self.session.has_key() and self.session.key_file_is_protected()
        except LocalError as exc:  # a damaged key file: words on what to do, not a crash
            self.notify(str(exc), severity="error", timeout=20)
            return

        def with_new(old: str | None, new: str | None) -> None:
            if new is None:
                return
            try:
                self.session.change_passphrase(old, new)
            except LocalError as exc:
                self.notify(str(exc), severity="error")
                return
            self.notify("Passphrase changed." if new else "Passphrase removed.")
            self.refresh_view()

        def with_old(old: str | None) -> None:
            if old is None:
                return
            self.app.push_screen(
                NewPassphraseScreen("New passphrase (empty: none):"),
                lambda new: with_new(old, new),
            )

        if not self.session.has_key():
            self.notify("No key yet: g generates one.", severity="warning")
        elif protected:
            self.app.push_screen(PassphraseScreen("Current passphrase:"), with_old)
        else:
            with_old("")

    def action_export(self) -> None:
        try:
            armored = self.session.key().public.armored
        except LocalError as exc:
            self.notify(str(exc), severity="error")
            return
        parsed = parse_address(self.session.address)
        stem = f"{parsed.name}@{parsed.domain}"
        default = str(Path.home() / f"{stem}.pub.asc")

        def write(path: str | None) -> None:
            if not path:
                return
            try:
                Path(path).expanduser().write_text(armored, encoding="utf-8")
            except OSError as exc:
                self.notify(f"Cannot write {path}: {exc.strerror}", severity="error")
                return
            self.notify(f"Public key written to {path}.")

        self.app.push_screen(PromptScreen("Export the public key to:", default), write)

    def action_register(self) -> None:
        self.with_unlocked_key(self.register_worker)

    def action_fetch_contact(self) -> None:
        def fetch(email: str | None) -> None:
            if email:
                self.fetch_worker(email.strip())

        self.app.push_screen(PromptScreen("Fetch whose key?", placeholder="(name)%(domain)"), fetch)

    def action_pin_offered(self) -> None:
        email = self._selected_contact()
        if email and self.session.contacts.pin_offered(email):
            self.notify(f"The new key of {email} is pinned.")
            self.refresh_view()
        else:
            self.notify("No changed key to pin for this contact.", severity="warning")

    def action_remove_contact(self) -> None:
        email = self._selected_contact()
        if email:
            self.session.contacts.remove(email)
            self.notify(f"Removed the key of {email}.")
            self.refresh_view()

    def action_close(self) -> None:
        self.dismiss(None)
