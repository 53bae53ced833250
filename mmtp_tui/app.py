"""The Textual application: picks the account, asks for the passphrase once per session,
runs the local server when the account wants one, and shows the screens."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable

from textual.app import App, SystemCommand
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.worker import Worker

from mmtp_proto.errors import LocalError
from mmtp_proto.keystore import Keystore
from mmtp_proto.known_servers import KnownServers

from . import idle_gc, keymap, notices
from .bindings import bindings
from .config import Account, Settings
from .local_server import LocalServer
from .mailstore import MailStore
from .plain import printable
from .screens.dialogs import ChoiceScreen, ConfirmScreen, PassphraseScreen
from .screens.help import HelpScreen
from .screens.main import MainScreen
from .screens.setup import SetupScreen
from .screens.worker_errors import unforeseen
from .session import AccountSession, default_keystore, default_store_path

THEMES = {"dark": "textual-dark", "light": "textual-light"}


class MailApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "mmtp"
    BINDINGS = bindings(keymap.APP)

    def __init__(
        self,
        settings: Settings,
        *,
        account: str | None = None,
        theme: str | None = None,
        low_bandwidth: bool | None = None,
        store: MailStore | None = None,
        keystore: Keystore | None = None,
        known_servers: KnownServers | None = None,
        local_server: LocalServer | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        if account:
            if account not in settings.accounts:
                raise LocalError(f"no account named {account!r} in {settings.path}")
            settings.active = account
        self.theme_name = theme or settings.theme
        self.low_bandwidth = settings.low_bandwidth if low_bandwidth is None else low_bandwidth
        self._store = store
        self._keystore = keystore
        self._known_servers = known_servers
        self.local_server = local_server
        self.session: AccountSession | None = None
        # One session per account for the whole run: its unlocked key is the passphrase
        # cache (asked once per account; forgotten after `passphrase_minutes` unused).
        self.sessions: dict[str, AccountSession] = {}
        self.terminal_notices: list[str] = []  # the escape sequences written (tests read it)
        self._waiting: set[threading.Event] = set()  # workers waiting for an answer
        problems = keymap.validate(settings.keymap)
        if problems:
            raise LocalError(problems[0])

    # ------------------------------------------------------------------ plumbing

    @property
    def store(self) -> MailStore:
        if self._store is None:
            self._store = MailStore(default_store_path())
        return self._store

    def make_session(self, account: Account) -> AccountSession:
        cached = self.sessions.get(account.name)
        if cached is not None and cached.account is account:
            return cached
        session = self._new_session(account)
        self.sessions[account.name] = session
        return session

    def expire_keys(self, now: float | None = None) -> list[str]:
        """Forget unlocked keys unused for `passphrase_minutes` (an agent's timeout);
        returns the accounts whose key was locked again."""
        minutes = self.settings.passphrase_minutes
        locked = [
            name
            for name, session in self.sessions.items()
            if session.forget_key_if_idle(minutes * 60, now=now)
        ]
        if locked:
            self.notify(
                f"Key of {', '.join(locked)} locked again after {minutes} min unused.",
                timeout=5,
            )
        return locked

    def new_mail_notice(self, count: int, account: str = "") -> None:
        """Outside the app: the bell, a desktop notice through the terminal, the hook."""
        settings = self.settings
        if settings.bell:
            self.bell()
        sequence = notices.osc_sequence(
            settings.desktop_notify, "mmtp", notices.new_mail_text(count)
        )
        if sequence:
            self.terminal_notices.append(sequence)
            driver = self._driver
            if driver is not None and not self.is_headless:
                driver.write(sequence)
                driver.flush()
        if settings.new_mail_hook:
            hook = settings.new_mail_hook
            self.run_worker(
                lambda: notices.run_hook(hook, count, account=account),
                thread=True,
                exit_on_error=False,
                name="new-mail-hook",
                group="hook",
            )

    def _new_session(self, account: Account) -> AccountSession:
        known = self._known_servers or KnownServers()
        if account.local_server and self.local_server is not None and self.local_server.info:
            known = KnownServers(self.local_server.directory / "known_servers")
            known.forget(account.host, account.secure_port)
            known.pin(account.host, account.secure_port, self.local_server.info.fingerprint)
        return AccountSession(
            account,
            store=self.store,
            keystore=self._keystore or default_keystore(),
            known_servers=known,
            on_new_fingerprint=self.ask_fingerprint,
        )

    def start_local_server(self, account: Account) -> None:
        """Blocking (call from a worker): start or reuse the local server; point the account
        at it."""
        if self.local_server is None:
            self.local_server = LocalServer()
        info = self.local_server.info or self.local_server.start()
        account.host, account.port, account.secure_port = info.host, info.port, info.secure_port

    def ask_fingerprint(self, host: str, port: int, fingerprint: str) -> bool:
        """From a worker thread: ask the user to accept a new server certificate."""
        answer: list[bool] = []
        event = threading.Event()

        def done(value: bool | None) -> None:
            answer.append(bool(value))
            event.set()

        groups = fingerprint.split(":")
        half = (len(groups) + 1) // 2
        shown = (
            ":".join(groups[:half]) + ":\n" + ":".join(groups[half:]) if half > 1 else fingerprint
        )
        question = (
            f"First connection to {host}:{port}.\nIts TLS certificate fingerprint is\n\n"
            f"{shown}\n\nTrust it (it will be pinned; a change later is refused)?"
        )
        self._waiting.add(event)
        try:
            self.call_from_thread(self.push_screen, ConfirmScreen(question, yes="Trust"), done)
            event.wait()
        finally:
            self._waiting.discard(event)
        return bool(answer and answer[0])

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Notifications carry addresses, paths and server words: never markup (a `[/x]`
        typed by the user would otherwise crash the app), and no terminal control (an ESC
        in a server's error message would reach the terminal)."""
        super().notify(
            printable(str(message), newlines=True),
            title=printable(title),
            severity=severity,
            timeout=timeout,
            markup=False,
        )

    # ------------------------------------------------------------------ life cycle

    def on_mount(self) -> None:
        self.theme = THEMES.get(self.theme_name, "textual-dark")
        if self.low_bandwidth:
            self.animation_level = "none"
        if self.settings.keymap:
            self.set_keymap(self.settings.keymap)
        self.set_interval(2, self.watch_local_server, name="local-server-watch")
        idle_gc.install(self)  # full collections between bursts of keys, not during them
        if self.settings.passphrase_minutes > 0:
            self.set_interval(30, self.expire_keys, name="passphrase-timeout")
        account = self.settings.account
        if account is None:
            self.push_screen(SetupScreen(first_run=True))
        else:
            self.start_account(account)

    def start_account(self, account: Account) -> None:
        if account.local_server:
            self.notify("Starting the local server…", timeout=2)
            self.run_worker(
                lambda: self._start_local_then(account),
                thread=True,
                exit_on_error=False,
                name="local-server",
            )
            return
        self.open_session(self.make_session(account))

    def _start_local_then(self, account: Account) -> None:
        try:
            self.start_local_server(account)
        except LocalError as exc:
            self.call_from_thread(
                self.notify, f"The local server did not start: {exc}", severity="error"
            )
        self.call_from_thread(lambda: self.open_session(self.make_session(account)))

    def watch_local_server(self) -> None:
        """Cheap, on the UI thread: notice (and reap) a local server that died."""
        server = self.local_server
        if server is None or server.info is None or server.running():
            return
        if any(w.name == "local-server-restart" and not w.is_finished for w in self.workers):
            return
        self.notify("The local server stopped; starting it again…", severity="warning")
        self.run_worker(
            self._restart_local_server,
            thread=True,
            exit_on_error=False,
            name="local-server-restart",
        )

    def _restart_local_server(self) -> None:
        server = self.local_server
        assert server is not None
        try:
            info = server.restart_if_dead()
        except LocalError as exc:
            self.call_from_thread(
                self.notify, f"The local server did not restart: {exc}", severity="error"
            )
            return
        if info is None:
            return
        session = self.session
        if session is not None and session.account.local_server:
            account = session.account
            account.host, account.port, account.secure_port = (
                info.host,
                info.port,
                info.secure_port,
            )
            session.known_servers.forget(info.host, info.secure_port)
            session.known_servers.pin(info.host, info.secure_port, info.fingerprint)
        self.call_from_thread(self.notify, "The local server is running again.")

    def open_session(self, session: AccountSession) -> None:
        self.session = session
        if session.needs_passphrase():
            self.ask_passphrase(session)
            return
        self.show_main(session)

    def ask_passphrase(self, session: AccountSession) -> None:
        def unlock(passphrase: str | None) -> None:
            if passphrase is None:
                self.notify(
                    "Locked: you can read mail already here; sending and fetching "
                    "need the passphrase.",
                    severity="warning",
                )
                self.show_main(session)
                return
            try:
                session.unlock(passphrase)
            except LocalError as exc:
                self.notify(str(exc), severity="error")
                self.ask_passphrase(session)
                return
            self.show_main(session)

        self.push_screen(PassphraseScreen(f"Passphrase for the key of {session.address}:"), unlock)

    def with_unlocked_key(
        self, session: AccountSession, then: Callable[[], None], *, why: str = ""
    ) -> None:
        """Run `then` once the key is unlocked, asking for the passphrase if needed: after
        an Esc at start-up, every action that needs the key offers to unlock it again."""
        if not session.needs_passphrase():
            then()
            return

        def unlock(passphrase: str | None) -> None:
            if passphrase is None:
                self.notify("The key stays locked.", severity="warning")
                return
            try:
                session.unlock(passphrase)
            except LocalError as exc:
                self.notify(str(exc), severity="error")
                return
            then()

        question = f"The key of {session.address} is locked{why}. Its passphrase:"
        self.push_screen(PassphraseScreen(question), unlock)

    def show_main(self, session: AccountSession) -> None:
        self.switch_screen(MainScreen(session)) if self._has_base_screen() else self.push_screen(
            MainScreen(session)
        )

    def _has_base_screen(self) -> bool:
        return len(self.screen_stack) > 1

    def on_unmount(self) -> None:
        for event in list(self._waiting):
            event.set()  # a question nobody will answer now: the worker gets "no"
        if self.local_server is not None:
            self.local_server.stop()
        if self._store is not None:
            self._store.close()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The app's own workers (the local server's): see screens/worker_errors.py."""
        words = unforeseen(event)
        if words is not None:
            self.notify(words, title="Error", severity="error", timeout=20)

    def keep_unsent_composes(self) -> None:
        """Save every open, changed compose as its draft (before quitting, or on a crash)."""
        from .screens.compose import ComposeScreen

        for screen in list(self.screen_stack):
            if isinstance(screen, ComposeScreen):
                screen.keep_draft(quiet=True)

    async def action_quit(self) -> None:
        """ctrl+q never loses a message being written: it is kept in Drafts."""
        with contextlib.suppress(Exception):  # a failing save must not stop the quit
            self.keep_unsent_composes()
        self.exit()

    def _handle_exception(self, error: Exception) -> None:
        # A crash must not lose a compose either; saving is best effort here.
        with contextlib.suppress(Exception):
            self.keep_unsent_composes()
        super()._handle_exception(error)

    # ------------------------------------------------------------------ app actions

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_theme(self) -> None:
        self.theme_name = "light" if self.theme_name == "dark" else "dark"
        self.theme = THEMES[self.theme_name]

    def action_accounts(self) -> None:
        choices = [(name, f"{name}: {a.address}") for name, a in self.settings.accounts.items()]
        choices.append(("+", "Add an account…"))

        def chosen(name: str | None) -> None:
            if name == "+":
                self.push_screen(SetupScreen(first_run=False))
            elif name:
                self.settings.active = name
                self.settings.save()
                self.start_account(self.settings.accounts[name])

        self.push_screen(ChoiceScreen("Accounts (the active one is used):", choices), chosen)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        seen: set[str] = set()
        for command in super().get_system_commands(screen):
            seen.add(command.title.lower())
            yield command
        for command in (
            SystemCommand("Help", "Show every key binding", self.action_help),
            SystemCommand("Theme", "Switch dark/light", self.action_toggle_theme),
            SystemCommand("Accounts", "Switch or add accounts", self.action_accounts),
        ):
            if command.title.lower() not in seen:
                seen.add(command.title.lower())
                yield command
        if isinstance(screen, MainScreen):
            for key in keymap.MAIN:
                if key.description.lower() in seen or key.action.startswith("app."):
                    continue
                seen.add(key.description.lower())
                yield SystemCommand(
                    key.description,
                    f"{key.id} ({keymap.display_keys(key.keys)})",
                    lambda action=key.action: screen.run_action(action),
                )
