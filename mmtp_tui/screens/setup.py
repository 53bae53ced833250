"""First run (and "add an account"): address, server, TLS verification, key, registration.

"Server: (●) Run a local server for me" is chosen on first run: nothing else needs to be
filled in. "( ) Connect to a server" enables the host, ports and TLS verification fields."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static

from mmtp_proto.address import Address
from mmtp_proto.errors import LocalError, MMTPError

from ..config import Account
from ..messages import AccountReady, SetupFailed, Stage
from ..plain import printable
from ..provisioning import account_name, default_local_name, provision
from ..session import error_text
from ..widgets.choice import Choice, ChoiceSet
from .worker_errors import SaysWorkerErrors

SERVER_FIELDS = ("#host", "#port", "#secure-port", "#verify")
LOCAL_HINT = "The local server chooses its host and ports: nothing to fill in here."
REMOTE_HINT = "The server's host, its plain port and its TLS port:"


class SetupScreen(SaysWorkerErrors, Screen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "create", "Create account", priority=True, id="setup.create"),
        Binding("escape", "cancel", "Cancel", id="setup.cancel"),
    ]

    def __init__(self, *, first_run: bool = True) -> None:
        super().__init__()
        self.first_run = first_run

    def compose(self) -> ComposeResult:
        yield Header()
        local = self.first_run
        with VerticalScroll(id="setup-form"):
            yield Static(
                "[b]Welcome to MMTP mail.[/b] Fill in what you need, then [b]ctrl+s[/b]. "
                "With 'Run a local server for me' nothing else is needed.",
                id="setup-intro",
            )
            yield Label("Server (↑/↓ chooses)", id="server-label")
            with ChoiceSet(id="server-mode"):
                yield Choice("Run a local server for me", value=local, id="mode-local")
                yield Choice("Connect to a server", value=not local, id="mode-remote")
            yield Static(LOCAL_HINT if local else REMOTE_HINT, id="server-hint")
            with Horizontal(classes="row -local" if local else "row", id="server-row"):
                with Vertical(classes="field host-field"):
                    yield Label("Host", classes="field-caption")
                    yield Input("127.0.0.1", id="host", disabled=local, classes="server-field")
                with Vertical(classes="field"):
                    yield Label("Port", classes="field-caption")
                    yield Input("8025", id="port", disabled=local, classes="server-field")
                with Vertical(classes="field"):
                    yield Label("TLS port", classes="field-caption")
                    yield Input("8026", id="secure-port", disabled=local, classes="server-field")
            yield Label("TLS verification")
            yield Select(
                [
                    ("tofu: pin the certificate on first use (default)", "tofu"),
                    ("ca: check against certificate authorities", "ca"),
                    ("insecure: do not check (testing only)", "insecure"),
                ],
                value="tofu",
                allow_blank=False,
                id="verify",
                disabled=local,
                classes="server-field",
            )
            yield Label("Address, as (name)%(domain)")
            yield Input(str(Address(default_local_name(), "localhost")), id="address")
            yield Label("Your name (shown on your key)")
            yield Input(default_local_name().title(), id="display-name")
            yield Label("Key")
            yield Select(
                [
                    ("RSA-4096 (default; takes a while to make)", "rsa4096"),
                    ("Ed25519 (fast, modern)", "ed25519"),
                ],
                value="rsa4096",
                allow_blank=False,
                id="algorithm",
            )
            yield Input(
                password=True, placeholder="passphrase for the key (recommended)", id="passphrase"
            )
            yield Input(
                placeholder="or import a private key file (path), optional", id="import-path"
            )
            yield Button("Create account (ctrl+s)", variant="primary", id="create")
            yield Static("", id="setup-status")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "mmtp — set up an account"
        self.query_one("#server-mode", ChoiceSet).focus()

    @property
    def local(self) -> bool:
        return self.query_one("#mode-local", Choice).value

    @on(ChoiceSet.Changed, "#server-mode")
    def server_mode_changed(self) -> None:
        local = self.local
        for wid in SERVER_FIELDS:
            self.query_one(wid).disabled = local
        self.query_one("#server-hint", Static).update(LOCAL_HINT if local else REMOTE_HINT)
        self.query_one("#server-row").set_class(local, "-local")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in a field moves on to the next one."""
        event.stop()
        self.focus_next()

    @on(Button.Pressed, "#create")
    def create_pressed(self) -> None:
        self.action_create()

    def action_cancel(self) -> None:
        if not self.first_run:
            self.dismiss(None)

    def _value(self, wid: str) -> str:
        return self.query_one(wid, Input).value.strip()

    def action_create(self) -> None:
        try:
            port, secure = int(self._value("#port")), int(self._value("#secure-port"))
        except ValueError:
            self.notify("Ports must be numbers.", severity="error")
            return
        address = self._value("#address")
        settings = self.app.settings  # type: ignore[attr-defined]
        name = account_name(address, settings.accounts)
        account = Account(
            name=name,
            address=address,
            display_name=self._value("#display-name"),
            host=self._value("#host"),
            port=port,
            secure_port=secure,
            verify=str(self.query_one("#verify", Select).value),
            local_server=self.local,
        )
        try:
            account.validate()
        except LocalError as exc:
            self.notify(str(exc), severity="error")
            return
        passphrase = self.query_one("#passphrase", Input).value
        algorithm = str(self.query_one("#algorithm", Select).value)
        import_path = self._value("#import-path")
        self.query_one("#create", Button).disabled = True
        self.set_up(account, algorithm, passphrase, import_path)

    @work(thread=True, exclusive=True, exit_on_error=False, group="setup")
    def set_up(self, account: Account, algorithm: str, passphrase: str, import_path: str) -> None:
        app = self.app
        try:
            if account.local_server:
                self.post_message(Stage("Starting the local server…"))
                app.start_local_server(account)  # type: ignore[attr-defined]
            session = app.make_session(account)  # type: ignore[attr-defined]
            provision(
                session,
                algorithm=algorithm,
                passphrase=passphrase or None,
                import_path=import_path,
                stage=lambda text: self.post_message(Stage(text)),
            )
            self.post_message(AccountReady(session))
        except (MMTPError, LocalError, OSError, ValueError) as exc:
            self.post_message(SetupFailed(error_text(exc)))

    def on_stage(self, message: Stage) -> None:
        self.query_one("#setup-status", Static).update(Text(printable(message.text, newlines=True)))

    def worker_failed(self, words: str) -> None:
        self.on_setup_failed(SetupFailed(words))

    def on_setup_failed(self, message: SetupFailed) -> None:
        self.query_one("#setup-status", Static).update(
            Text(printable(message.text, newlines=True), style="red")
        )
        self.notify(message.text, title="Setup failed", severity="error", timeout=10)
        self.query_one("#create", Button).disabled = False

    def on_account_ready(self, message: AccountReady) -> None:
        session = message.session
        app = self.app
        app.settings.add_account(session.account)  # type: ignore[attr-defined]
        app.settings.save()  # type: ignore[attr-defined]
        self.notify(f"Account {session.address} is ready.", markup=False)
        app.open_session(session)  # type: ignore[attr-defined]
