"""Accounts and settings, kept as TOML in platformdirs' config dir ("mmtp/tui.toml").

Plain data: no Textual here. The file is small and written by us, so a tiny TOML writer for
strings, integers, booleans and one level of tables is enough (tomllib reads it back).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs

from mmtp_proto.address import normalize_address
from mmtp_proto.errors import LocalError, MMTPError

APP_NAME = "mmtp"
VERIFY_MODES = ("tofu", "ca", "insecure")
THEMES = ("dark", "light")
NOTIFY_MODES = ("off", "osc9", "osc777")


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def default_config_path() -> Path:
    return config_dir() / "tui.toml"


@dataclass
class Account:
    """One mail address on one server, and how to reach it."""

    name: str
    address: str
    display_name: str = ""
    host: str = "127.0.0.1"
    port: int = 8025
    secure_port: int = 8026
    use_tls: bool = True
    verify: str = "tofu"
    ca_file: str = ""
    keep_on_server: bool = False
    local_server: bool = False
    check_interval: int = 60

    def validate(self) -> Account:
        try:
            self.address = normalize_address(self.address)
        except MMTPError as exc:
            raise LocalError(f"account {self.name!r}: {exc.message}") from None
        if self.verify not in VERIFY_MODES:
            raise LocalError(
                f"account {self.name!r}: verify must be one of {', '.join(VERIFY_MODES)}"
            )
        for port in (self.port, self.secure_port):
            if not isinstance(port, int) or not 0 < port < 65536:
                raise LocalError(f"account {self.name!r}: ports must be numbers 1-65535")
        return self


@dataclass
class Settings:
    active: str = ""
    theme: str = "dark"
    low_bandwidth: bool = False
    mouse: bool = True
    signature_file: str = ""  # appended to new messages as a "-- " block
    open_command: str = "xdg-open"  # opens an attachment (the file's path is its last word)
    mailcap: bool = True  # look in the mailcap ($MAILCAPS, ~/.mailcap…) before open_command
    bell: bool = True  # ring the terminal bell on new mail
    desktop_notify: str = "osc9"  # off, osc9 or osc777: a desktop notice through the terminal
    new_mail_hook: str = ""  # a command run on new mail, MMTP_NEW_MAIL=count in its env
    passphrase_minutes: int = 0  # forget an unlocked key after this long unused; 0: never
    accounts: dict[str, Account] = field(default_factory=dict)
    keymap: dict[str, str] = field(default_factory=dict)
    path: Path = field(default_factory=default_config_path)

    @property
    def account(self) -> Account | None:
        if self.active in self.accounts:
            return self.accounts[self.active]
        return next(iter(self.accounts.values()), None)

    def add_account(self, account: Account, *, activate: bool = True) -> None:
        self.accounts[account.name] = account.validate()
        if activate or not self.active:
            self.active = account.name

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(dumps(self))
        os.replace(tmp, self.path)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else _string(name)


def _string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return _string(str(value))


def dumps(settings: Settings) -> str:
    lines = ["# mmtp-tui settings; edit with care (mmtp-tui rewrites this file)."]
    lines += [
        f"active = {_value(settings.active)}",
        f"theme = {_value(settings.theme)}",
        f"low_bandwidth = {_value(settings.low_bandwidth)}",
        f"mouse = {_value(settings.mouse)}",
        f"signature_file = {_value(settings.signature_file)}",
        f"open_command = {_value(settings.open_command)}",
        f"mailcap = {_value(settings.mailcap)}",
        f"bell = {_value(settings.bell)}",
        f"desktop_notify = {_value(settings.desktop_notify)}",
        f"new_mail_hook = {_value(settings.new_mail_hook)}",
        f"passphrase_minutes = {_value(settings.passphrase_minutes)}",
        "",
        '# Remap keys by binding id, e.g. compose = "ctrl+n" (see `?` in the app for ids).',
        "[keymap]",
    ]
    lines += [f"{_key(k)} = {_value(v)}" for k, v in sorted(settings.keymap.items())]
    for name, account in settings.accounts.items():
        lines += ["", f"[accounts.{_key(name)}]"]
        for key, value in asdict(account).items():
            if key != "name":
                lines.append(f"{key} = {_value(value)}")
    return "\n".join(lines) + "\n"


def load(path: Path | None = None) -> Settings:
    """Read the settings; a missing file gives empty settings (first run)."""
    path = path or default_config_path()
    settings = Settings(path=path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return settings
    except OSError as exc:
        raise LocalError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise LocalError(f"{path} is not valid TOML: {exc}") from None
    settings.active = str(raw.get("active", ""))
    theme = str(raw.get("theme", "dark"))
    if theme not in THEMES:
        raise LocalError(f"{path}: theme must be dark or light")
    settings.theme = theme
    settings.low_bandwidth = bool(raw.get("low_bandwidth", False))
    settings.mouse = bool(raw.get("mouse", True))
    settings.signature_file = str(raw.get("signature_file", ""))
    settings.open_command = str(raw.get("open_command", "xdg-open"))
    settings.mailcap = bool(raw.get("mailcap", True))
    settings.bell = bool(raw.get("bell", True))
    settings.desktop_notify = str(raw.get("desktop_notify", "osc9"))
    if settings.desktop_notify not in NOTIFY_MODES:
        raise LocalError(f"{path}: desktop_notify must be one of {', '.join(NOTIFY_MODES)}")
    settings.new_mail_hook = str(raw.get("new_mail_hook", ""))
    minutes = raw.get("passphrase_minutes", 0)
    if not isinstance(minutes, int) or isinstance(minutes, bool) or minutes < 0:
        raise LocalError(f"{path}: passphrase_minutes must be a whole number, 0 or more")
    settings.passphrase_minutes = minutes
    keymap = raw.get("keymap", {})
    if not isinstance(keymap, dict):
        raise LocalError(f"{path}: [keymap] must be a table of binding id = keys")
    settings.keymap = {str(k): str(v) for k, v in keymap.items()}
    known = {f.name for f in fields(Account)}
    for name, values in (raw.get("accounts") or {}).items():
        if not isinstance(values, dict):
            raise LocalError(f"{path}: accounts.{name} must be a table")
        unknown = set(values) - known
        if unknown:
            raise LocalError(f"{path}: accounts.{name}: unknown setting {sorted(unknown)[0]}")
        try:
            account = Account(name=name, **values)
        except TypeError as exc:
            raise LocalError(f"{path}: accounts.{name}: {exc}") from None
        settings.accounts[name] = account.validate()
    return settings
