"""Every private key an account has ever used, kept for good.

The keystore holds one current key per address (the file `mmtp_proto` reads). Before that
file is replaced (a new key, a new passphrase, an import), its text is copied here, and so
is the new text: mail encrypted to an older key stays readable, and the key the server
still knows can prove itself to replace it. Files are created with O_EXCL, never
overwritten, named by a hash of their text (the same text is kept once). Plain module: no
Textual.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from mmtp_proto import pgp
from mmtp_proto.address import parse_address
from mmtp_proto.errors import LocalError, MMTPError
from mmtp_proto.keystore import Keystore

SUFFIX = ".sec.asc"


def _stem(address: str) -> str:
    parsed = parse_address(address)
    return f"{parsed.name}@{parsed.domain}"


def write_new(path: Path, text: str) -> bool:
    """Create `path` with `text` (0600); False if it already exists. Never follows a link
    and never replaces a file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    return True


class KeyRing:
    def __init__(self, keystore: Keystore, address: str) -> None:
        self.keystore = keystore
        self.address = address
        self.directory = keystore.path / "ring"

    def _dir(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.directory

    def keep(self, armored: str) -> Path:
        """Keep this key text (idempotent); returns its file."""
        digest = hashlib.sha256(armored.encode("utf-8")).hexdigest()[:24]
        path = self._dir() / f"{_stem(self.address)}.{digest}{SUFFIX}"
        write_new(path, armored)
        return path

    def keep_current(self) -> Path | None:
        """Keep the keystore's current key file before anything replaces it."""
        try:
            data = self.keystore.private_path(self.address).read_bytes()
        except FileNotFoundError:
            return None
        # A damaged file (not UTF-8) is kept as well as it reads: replacing it must not fail.
        return self.keep(data.decode("utf-8", errors="replace"))

    def files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        prefix = _stem(self.address) + "."
        return sorted(
            (p for p in self.directory.iterdir() if p.name.startswith(prefix)),
            key=lambda p: p.stat().st_mtime,
        )

    def unlock(self, passphrase: str | None, *, skip: str | None = None) -> list[pgp.PrivateKey]:
        """The ring's keys that open with `passphrase` (newest first), one per fingerprint,
        without the one whose fingerprint is `skip` (the current key)."""
        keys: dict[str, pgp.PrivateKey] = {}
        for path in reversed(self.files()):
            text = path.read_text(encoding="utf-8")
            for attempt in dict.fromkeys((passphrase, None)):
                with contextlib.suppress(LocalError, MMTPError, ValueError):
                    key = pgp.PrivateKey.from_armored(text, attempt)
                    fingerprint = key.public.fingerprint
                    if fingerprint != skip and fingerprint not in keys:
                        keys[fingerprint] = key
                    break
        return list(keys.values())
