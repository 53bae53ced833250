"""Keys on the user's disk: own private keys (files 0600) and contacts' pinned public keys."""

from __future__ import annotations

from pathlib import Path

import platformdirs

from . import pgp
from .address import parse_address
from .atomic_file import write_atomically
from .errors import LocalError


def default_keystore_path() -> Path:
    return Path(platformdirs.user_data_dir("mmtp", appauthor=False)) / "keystore"


def _file_stem(email: str) -> str:
    # Addresses are validated first, so the stem holds only a-z 0-9 . _ + - @.
    address = parse_address(email)
    return f"{address.name}@{address.domain}"


def _write_private(path: Path, text: str) -> None:
    # Durable before it is used: a crash must not forget a key that was already registered
    # (trust on first use), which would lock its owner out of the address.
    write_atomically(path, text.encode("utf-8"), 0o600)


class Keystore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_keystore_path()

    def _dir(self, sub: str = "") -> Path:
        directory = self.path / sub if sub else self.path
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        return directory

    def private_path(self, email: str) -> Path:
        return self._dir() / f"{_file_stem(email)}.sec.asc"

    def has_private(self, email: str) -> bool:
        return self.private_path(email).exists()

    def save_private(self, key: pgp.PrivateKey, email: str | None = None) -> Path:
        path = self.private_path(email or key.public.emails[0])
        _write_private(path, key.armored)
        return path

    def load_private(self, email: str, passphrase: str | None = None) -> pgp.PrivateKey:
        path = self.private_path(email)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise LocalError(
                f"no private key for {email} in {self.path}; generate or import one"
            ) from None
        return pgp.PrivateKey.from_armored(text, passphrase)

    def private_is_protected(self, email: str) -> bool:
        text = self.private_path(email).read_text(encoding="utf-8")
        return pgp.armored_key_is_protected(text)

    def contact_path(self, email: str) -> Path:
        return self._dir("contacts") / f"{_file_stem(email)}.pub.asc"

    def save_contact(self, email: str, armored: str) -> None:
        _write_private(self.contact_path(email), armored)

    def load_contact(self, email: str) -> pgp.PublicKey | None:
        path = self.contact_path(email)
        if not path.exists():
            return None
        return pgp.PublicKey.from_armored(path.read_text(encoding="utf-8"))

    def remove_contact(self, email: str) -> None:
        self.contact_path(email).unlink(missing_ok=True)
