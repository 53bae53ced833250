"""Pinned TLS certificate fingerprints, one `host:port fingerprint` per line (like SSH's
known_hosts). Trust on first use; a changed certificate is refused loudly."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from .errors import LocalError


def default_known_servers_path() -> Path:
    return Path(platformdirs.user_config_dir("mmtp", appauthor=False)) / "known_servers"


class CertificateChanged(LocalError):
    def __init__(self, host: str, port: int, pinned: str, seen: str, path: Path) -> None:
        super().__init__(
            f"WARNING: the TLS certificate of {host}:{port} has CHANGED.\n"
            f"  pinned:  {pinned}\n  offered: {seen}\n"
            "Someone may be intercepting the connection, or the operator replaced the "
            "certificate. If you have confirmed the new fingerprint with the operator, remove "
            f"the line for {host}:{port} from {path} and connect again."
        )
        self.host, self.port, self.pinned, self.seen = host, port, pinned, seen


class KnownServers:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_known_servers_path()

    @staticmethod
    def _key(host: str, port: int) -> str:
        return f"{host.lower()}:{port}"

    def _entries(self) -> dict[str, str]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise LocalError(f"cannot read {self.path}: {exc.strerror}") from None
        entries: dict[str, str] = {}
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and not line.startswith("#"):
                entries[parts[0]] = parts[1]
        return entries

    def get(self, host: str, port: int) -> str | None:
        return self._entries().get(self._key(host, port))

    def pin(self, host: str, port: int, fingerprint: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(f"{self._key(host, port)} {fingerprint}\n")

    def forget(self, host: str, port: int) -> None:
        key = self._key(host, port)
        entries = self._entries()
        if key in entries:
            del entries[key]
            body = "".join(f"{k} {v}\n" for k, v in entries.items())
            self.path.write_text(body, encoding="utf-8")

    def check(self, host: str, port: int, fingerprint: str) -> bool:
        """True if already pinned and equal; False if unknown; raise if it changed."""
        pinned = self.get(host, port)
        if pinned is None:
            return False
        if pinned != fingerprint:
            raise CertificateChanged(host, port, pinned, fingerprint, self.path)
        return True
