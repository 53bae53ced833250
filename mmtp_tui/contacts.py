"""Contacts' public keys: pinned on first use, a changed key is held back and reported.

The pinned keys live in the keystore's contacts dir (files 0600); offered keys that differ
from the pinned one are kept in `key_changes.json` next to them until the user pins the new
key or dismisses the warning. Plain module: no Textual.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from mmtp_proto import pgp
from mmtp_proto.address import Address, normalize_address
from mmtp_proto.errors import LocalError, MMTPError
from mmtp_proto.keystore import Keystore

from .keyring import write_new

PINNED = "pinned"  # first time seen: now pinned
SAME = "same"
CHANGED = "changed"
# What a change records as the pinned key when its file cannot be read (damaged, not a key).
UNREADABLE = "a key whose file cannot be read"


@dataclass
class KeyChange:
    email: str
    pinned: str
    offered: str
    armored: str

    @property
    def text(self) -> str:
        return (
            f"The key of {self.email} has CHANGED. Pinned {self.pinned}, the server now "
            f"offers {self.offered}. Someone may be impersonating them: confirm the new "
            "fingerprint with them before pinning it (Keys pane)."
        )


@dataclass
class Contact:
    email: str
    fingerprint: str
    algorithm: str
    name: str


def _scope_dir(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "_"
    if safe != name:  # two names that clean up the same must not share pins
        safe += "-" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    return safe


class Contacts:
    def __init__(self, keystore: Keystore) -> None:
        self.keystore = keystore

    @classmethod
    def for_account(cls, keystore: Keystore, account: str) -> Contacts:
        """The pins of one account. Two accounts may talk to two servers that both serve
        `localhost`: a key pinned through one must not vouch for the other. Pins made
        before pins were per account are copied in once, so nobody loses a pin."""
        scoped = Keystore(keystore.path / "accounts" / _scope_dir(account))
        target = scoped.path / "contacts"
        if not target.exists():
            target.mkdir(parents=True, mode=0o700)
            shared = keystore.path / "contacts"
            if shared.is_dir():
                for path in shared.iterdir():
                    if path.is_file() and not path.is_symlink():
                        write_new(target / path.name, path.read_text(encoding="utf-8"))
        return cls(scoped)

    @property
    def _changes_path(self) -> Path:
        return self.keystore.path / "contacts" / "key_changes.json"

    def _changes(self) -> dict[str, dict[str, str]]:
        try:
            return json.loads(self._changes_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}

    def _write_changes(self, changes: dict[str, dict[str, str]]) -> None:
        path = self._changes_path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(changes, fh)

    def get(self, email: str) -> pgp.PublicKey | None:
        try:
            return self.keystore.load_contact(normalize_address(email))
        except (LocalError, MMTPError, ValueError, OSError):
            return None

    def observe(self, email: str, key: pgp.PublicKey) -> str:
        """A key the server offers for `email`: pin it if new; record a change if it differs."""
        email = normalize_address(email)
        try:
            pinned = self.keystore.load_contact(email)
        except (LocalError, MMTPError, ValueError, OSError):
            # A pin that cannot be read is not the absence of one: replacing it unasked would
            # skip the very warning pinning is for.
            was = UNREADABLE
        else:
            if pinned is None:
                self.keystore.save_contact(email, key.armored)
                return PINNED
            if pinned.fingerprint == key.fingerprint:
                return SAME
            was = pinned.fingerprint
        changes = self._changes()
        changes[email] = {
            "pinned": was,
            "offered": key.fingerprint,
            "armored": key.armored,
        }
        self._write_changes(changes)
        return CHANGED

    def pin(self, email: str, key: pgp.PublicKey) -> None:
        """Pin `key` (replacing the old one) and clear any warning about it."""
        email = normalize_address(email)
        self.keystore.save_contact(email, key.armored)
        self.dismiss(email)

    def pin_offered(self, email: str) -> bool:
        change = self.changes().get(normalize_address(email))
        if change is None:
            return False
        self.pin(change.email, pgp.PublicKey.from_armored(change.armored))
        return True

    def dismiss(self, email: str) -> None:
        changes = self._changes()
        if changes.pop(normalize_address(email), None) is not None:
            self._write_changes(changes)

    def changes(self) -> dict[str, KeyChange]:
        return {
            email: KeyChange(email, c["pinned"], c["offered"], c["armored"])
            for email, c in self._changes().items()
        }

    def remove(self, email: str) -> None:
        email = normalize_address(email)
        self.keystore.remove_contact(email)
        self.dismiss(email)

    def all(self) -> list[Contact]:
        directory = self.keystore.path / "contacts"
        out: list[Contact] = []
        if not directory.is_dir():
            return out
        for path in sorted(directory.glob("*.pub.asc")):
            stem = path.name.removesuffix(".pub.asc")
            name, _, domain = stem.rpartition("@")
            email = str(Address(name, domain))
            key = self.get(email)
            if key is not None:
                out.append(Contact(email, key.fingerprint, key.algorithm, key.name))
        return out
