"""What `mmtp-admin` does to a server's data (SPEC §11), without argument parsing or printing.

Each operation takes an open store (SQLite `Store` or `PostgresStore`, or the data directory)
and returns plain data (dicts, lists, strings) that the command prints as text or JSON; a
refusal is a `LocalError` with one sentence. Every write is one short transaction, committed
before the function returns, and a running server sees it at its next request: on SQLite it
checks `PRAGMA data_version` before using its caches; on PostgreSQL it keeps account settings
for one request only and checks the key version row (see `store_postgres`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import pgp
from .address import domain_of, normalize_address
from .config import ServerConfig
from .domain_keys import DomainKeyring
from .errors import LocalError, MMTPError
from .registration import (
    INVITE_VALID_SECONDS,
    NAME_HOLD_SECONDS,
    RESERVED_NAMES,
    invite_digest,
    new_invite_token,
)

if TYPE_CHECKING:
    from .store import Store
    from .store_postgres import PostgresStore

_SIZE = re.compile(r"(?P<n>\d+)\s*(?P<unit>[kmgt]?i?b?)?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """ "1G", "500MiB", "64k" or a plain number of bytes → bytes (binary units)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise LocalError(f"{text!r} is not a size; write e.g. 500M, 2G or 1048576")
    unit = (match["unit"] or "").lower().rstrip("b").rstrip("i")
    return int(match["n"]) * _UNITS[unit]


def format_size(n: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n} B"


def format_time(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%d %H:%M} UTC"


@dataclass
class Admin:
    """One admin session: the server's configuration (as far as it is known) and its store."""

    config: ServerConfig
    store: Store | PostgresStore
    # Whether the domains are the operator's (from --config) or only the defaults.
    knows_domains: bool = False

    def now(self) -> int:
        return int(time.time())

    def address(self, text: str) -> str:
        try:
            email = normalize_address(text, "the address")
        except MMTPError as exc:
            raise LocalError(exc.message) from None
        if self.knows_domains and domain_of(email) not in self.config.domains:
            raise LocalError(
                f"{email} is not on a domain this server serves ({', '.join(self.config.domains)})"
            )
        return email

    def _existing(self, text: str) -> str:
        email = self.address(text)
        if self.store.get_key(email) is None:
            raise LocalError(f"{email} has no account here (no key registered)")
        return email

    # ------------------------------------------------------------------ accounts

    def list_accounts(self) -> dict[str, Any]:
        now = self.now()
        return {
            "accounts": self.store.list_accounts(),
            "held": [{"email": e, "until": u} for e, u in self.store.held_names(now)],
            "invites": [{"email": e, "expiresAt": x} for e, x in self.store.list_invites(now)],
        }

    def invite(self, text: str) -> dict[str, Any]:
        email = self.address(text)
        now = self.now()
        if self.store.get_key(email) is not None:
            raise LocalError(f"{email} is already registered; an invite is for a new address")
        until = self.store.held_until(email, now)
        if until is not None:
            raise LocalError(
                f"{email} is held until {format_time(until)}; run `accounts release` first"
            )
        token = new_invite_token()
        expires = now + INVITE_VALID_SECONDS
        self.store.add_invite(invite_digest(token), email, now=now, expires_at=expires)
        self.store.commit()
        return {"email": email, "invite": token, "expiresAt": expires}

    def _read_key(self, email: str, key_file: Path) -> pgp.PublicKey:
        try:
            text = Path(key_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise LocalError(f"cannot read the key file {key_file}: {exc}") from None
        try:
            return pgp.validate_public_key_for(text, email)
        except MMTPError as exc:
            raise LocalError(f"the key in {key_file} cannot be used: {exc.message}") from None

    def add(self, text: str, key_file: Path) -> dict[str, Any]:
        email = self.address(text)
        if self.store.get_key(email) is not None:
            raise LocalError(f"{email} already has a key; use `accounts reset-key` to replace it")
        key = self._read_key(email, key_file)
        # The operator's own choice: reserved names, the policy and a hold do not apply.
        self.store.release_name(email)
        self.store.put_key(email, key.armored, key.fingerprint, self.now())
        self.store.commit()
        return {"email": email, "fingerprint": key.fingerprint}

    def reset_key(self, text: str, key_file: Path) -> dict[str, Any]:
        email = self._existing(text)
        key = self._read_key(email, key_file)
        # Connections authenticated with the old key stop counting as that address.
        self.store.put_key(email, key.armored, key.fingerprint, self.now())
        self.store.commit()
        return {"email": email, "fingerprint": key.fingerprint}

    def set_disabled(self, text: str, disabled: bool) -> dict[str, Any]:
        email = self._existing(text)
        self.store.set_account(email, disabled=disabled)
        self.store.commit()
        return {"email": email, "disabled": disabled}

    def delete(self, text: str) -> dict[str, Any]:
        email = self._existing(text)
        until = self.now() + NAME_HOLD_SECONDS
        deleted = self.store.delete_account(email, hold_until=until)
        self.store.commit()
        return {"email": email, "deletedMessages": deleted, "heldUntil": until}

    def release(self, text: str) -> dict[str, Any]:
        email = self.address(text)
        if not self.store.release_name(email):
            raise LocalError(f"{email} is not held")
        self.store.commit()
        return {"email": email, "released": True}

    # ------------------------------------------------------------------ quotas

    def quota(self, text: str | None) -> dict[str, Any]:
        defaults = {
            "maxMessages": self.config.mailbox_max_messages,
            "maxBytes": self.config.mailbox_max_bytes,
        }
        if text is None:
            overrides = [
                a
                for a in self.store.list_accounts()
                if a["maxMessages"] is not None or a["maxBytes"] is not None
            ]
            return {"defaults": defaults, "accounts": overrides}
        email = self._existing(text)
        record = self.store.account(email)
        count, size = self.store.mailbox_usage(email)
        return {
            "email": email,
            "messages": count,
            "bytes": size,
            "maxMessages": record.max_messages,
            "maxBytes": record.max_bytes,
            "defaults": defaults,
        }

    def set_quota(self, text: str, messages: str | None, size: str | None) -> dict[str, Any]:
        email = self._existing(text)
        if messages is None and size is None:
            raise LocalError("give --messages, --bytes or both (a number, or `default`)")
        changes: dict[str, int | None] = {}
        if messages is not None:
            changes["max_messages"] = None if messages == "default" else _count(messages)
        if size is not None:
            changes["max_bytes"] = None if size == "default" else parse_size(size)
        self.store.set_account(email, **changes)
        self.store.commit()
        return self.quota(email)

    # ------------------------------------------------------------------ reserved names

    def reserved(self) -> dict[str, Any]:
        return {
            "builtin": sorted(RESERVED_NAMES),
            "config": sorted(self.config.reserved_names),
            "added": self.store.reserved_names(),
        }

    def reserve(self, name: str, add: bool) -> dict[str, Any]:
        name = name.strip().lower()
        if not name or "+" in name or not re.fullmatch(r"[a-z0-9_.\-]{1,64}", name):
            raise LocalError(f"{name!r} is not a name (the part of an address before any +)")
        if add:
            if not self.store.add_reserved_name(name):
                raise LocalError(f"{name} is already reserved")
        else:
            if name in RESERVED_NAMES:
                raise LocalError(f"{name} is reserved by the protocol and cannot be removed")
            if not self.store.remove_reserved_name(name):
                raise LocalError(f"{name} is not on the operator's reserved list")
        self.store.commit()
        return self.reserved()


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise LocalError(f"{text!r} is not a number of messages (1 or more, or `default`)")
    return int(text)


# ---------------------------------------------------------------------- domain keys


def domain_keys(data_dir: Path, rotate: bool) -> dict[str, Any]:
    keyring = DomainKeyring.load_or_create(data_dir)
    if rotate:
        keyring.rotate()
    active = keyring.active.id
    return {
        "active": active,
        "keys": [{**entry, "active": entry["id"] == active} for entry in keyring.published()],
    }
