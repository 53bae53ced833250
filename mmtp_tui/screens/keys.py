"""The keys pane: my key (fingerprint, algorithm, created, registered or not) and contacts'
pinned keys, with key-change warnings."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label, Static

from mmtp_proto.errors import LocalError, MMTPError

from .. import keymap
from ..bindings import bindings
from ..messages import Done, Failed, Stage
from ..session import AccountSession, error_text
from .dialogs import ChoiceScreen, PassphraseScreen, PromptScreen


class KeysScreen(Screen[None]):
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
        self.query_one("#my-key", Static).update(text)
        table = self.query_one("#contacts", DataTable)
        table.clear()
        changes = self.session.contacts.changes()
        for contact in self.session.contacts.all():
            mark = " ⚠" if contact.email in changes else ""
            table.add_row(
                contact.email + mark, contact.fingerprint, contact.algorithm, key=contact.email
            )
        warnings = Text()
        for change in changes.values():
            warnings.append("⚠ " + change.text + "\n", style="bold red")
        self.query_one("#key-warnings", Static).update(warnings)

    def _selected_contact(self) -> str | None:
        table = self.query_one("#contacts", DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    # ------------------------------------------------------------------ workers

    @work(thread=True, exclusive=True, exit_on_error=False, group="keys-check")
    def check_registration(self) -> None:
        try:
            self.post_message(Done("registered", self.session.registered_fingerprint()))
        except (MMTPError, LocalError, OSError) as exc:
            self.post_message(Failed(error_text(exc), what="check"))

    @work(thread=True, exclusive=True, exit_on_error=False, group="keys")
    def run_job(self, what: str, label: str, *args: object) -> None:
        self.post_message(Stage(label))
        session = self.session
        try:
            if what == "generate":
                algorithm, passphrase = args
                value = session.generate_key(str(algorithm), passphrase or None)  # type: ignore[arg-type]
            elif what == "register":
                replace = self.registered not in (None, False)
                value = session.register(replace=bool(replace))
            elif what == "fetch":
                value = session.fetch_contact(str(args[0]))
            else:
                raise LocalError(f"unknown job {what}")
            self.post_message(Done(what, value))
        except (MMTPError, LocalError, OSError, ValueError) as exc:
            self.post_message(Failed(error_text(exc), what=what))

    def on_stage(self, message: Stage) -> None:
        self.query_one("#key-status", Static).update(Text(message.text, style="bold"))

    def on_done(self, message: Done) -> None:
        self.query_one("#key-status", Static).update("")
        if message.what == "registered":
            self.registered = message.value
        elif message.what == "generate":
            self.notify("New key made. Press r to register it with the server.")
            self.check_registration()
        elif message.what == "register":
            self.notify(f"Registered: {message.value}")
            self.registered = message.value
        elif message.what == "fetch":
            _key, status = message.value
            if status == "changed":
                self.notify(
                    "This contact's key has CHANGED: see the warning below.",
                    severity="error",
                    timeout=20,
                )
            else:
                self.notify(f"Contact key {status}.")
        self.refresh_view()

    def on_failed(self, message: Failed) -> None:
        self.query_one("#key-status", Static).update("")
        if message.what == "check":
            self.registered = False
            self.query_one("#key-status", Static).update(
                Text(f"Server not reachable: {message.text}", style="yellow")
            )
            return
        self.notify(message.text, severity="error", timeout=10)

    # ------------------------------------------------------------------ actions

    def action_generate(self) -> None:
        def chosen(algorithm: str | None) -> None:
            if not algorithm:
                return

            def with_passphrase(passphrase: str | None) -> None:
                if passphrase is None:
                    return
                label = (
                    "Generating an RSA-4096 key (this can take a minute)…"
                    if (algorithm == "rsa4096")
                    else f"Generating an {algorithm} key…"
                )
                self.run_job("generate", label, algorithm, passphrase)

            self.app.push_screen(
                PassphraseScreen("Passphrase for the new key (empty: none):"), with_passphrase
            )

        self.app.push_screen(
            ChoiceScreen(
                "Generate a new key (it replaces your current one here):",
                [("rsa4096", "RSA-4096 (slow to make)"), ("ed25519", "Ed25519 (fast)")],
            ),
            chosen,
        )

    def action_change_passphrase(self) -> None:
        def done(passphrase: str | None) -> None:
            if passphrase is None:
                return
            try:
                self.session.change_passphrase(passphrase)
            except LocalError as exc:
                self.notify(str(exc), severity="error")
                return
            self.notify("Passphrase changed." if passphrase else "Passphrase removed.")
            self.refresh_view()

        self.app.push_screen(PassphraseScreen("New passphrase (empty: none):"), done)

    def action_export(self) -> None:
        try:
            armored = self.session.key().public.armored
        except LocalError as exc:
            self.notify(str(exc), severity="error")
            return
        stem = self.session.address.replace(")%(", "@").strip("()")
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
        self.run_job("register", "Registering the key…")

    def action_fetch_contact(self) -> None:
        def fetch(email: str | None) -> None:
            if email:
                self.run_job("fetch", f"Fetching the key of {email}…", email.strip())

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
