"""Ed25519 domain keys and the DOMAIN_AUTH signature (SPEC §8.3).

On disk, under `<data_dir>/domain_keys/` (directory 0700): one `<id>.key` per published key
(PKCS#8 PEM, unencrypted, mode 0600, written atomically) and `active`, the id of the key that
signs. Rotation writes the new key file first and then swaps `active`, so a crash in between
leaves the old key active and the new one merely published early: harmless. Retiring deletes
a key file; the active key cannot be retired.

Verification is pure: `parse_key_list` turns a fetched `DOMAIN_KEY` answer into keys indexed by
ids recomputed here, `verify_domain_auth` checks one signature. `DomainKeyCache` holds fetched
keys and decides when a fetch is allowed; the fetching itself (network) is the server's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .atomic_file import fsync_dir, write_atomically
from .errors import AUTH_FAILED, LocalError, MMTPError

KEY_DIR = "domain_keys"
ACTIVE_NAME = "active"
ALG = "ed25519"
AUTH_PREFIX = "MMTP-DOMAIN-AUTH"
TTL_MIN = 60
TTL_MAX = 86_400
DEFAULT_TTL = 3600
# Rotation publishes old and new side by side; a list much longer than that is not a key list.
MAX_KEYS = 16
REFETCH_INTERVAL = 60.0
MAX_CACHED_DOMAINS = 10_000


def compute_key_id(raw_public: bytes) -> str:
    """First 16 hex characters of SHA-256 of the raw 32-byte public key."""
    return hashlib.sha256(raw_public).hexdigest()[:16]


def raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def cert_hash(der: bytes) -> str:
    """`certHash`: lowercase hex SHA-256 of a DER leaf certificate."""
    return hashlib.sha256(der).hexdigest()


def clamp_ttl(ttl: object) -> int:
    """A remote's `ttl` as a verifier uses it: an integer within 60 s–1 day (junk → 60 s)."""
    if not isinstance(ttl, int) or isinstance(ttl, bool):
        return TTL_MIN
    return max(TTL_MIN, min(ttl, TTL_MAX))


def auth_input(receiver_domain: str, nonce: str, domain: str, cert_hash_hex: str) -> bytes:
    """The exact bytes a DOMAIN_AUTH signature covers; both domains must be lowercased."""
    return f"{AUTH_PREFIX}\n{receiver_domain}\n{nonce}\n{domain}\n{cert_hash_hex}".encode()


@dataclass(frozen=True)
class DomainKey:
    private: Ed25519PrivateKey = field(repr=False)

    @property
    def raw_public(self) -> bytes:
        return raw_public(self.private.public_key())

    @property
    def id(self) -> str:
        return compute_key_id(self.raw_public)

    def entry(self) -> dict[str, str]:
        """This key as one element of the DOMAIN_KEY answer's `keys`."""
        return {
            "id": self.id,
            "alg": ALG,
            "publicKey": base64.b64encode(self.raw_public).decode("ascii"),
        }

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self.private.sign(data)).decode("ascii")


class DomainKeyring:
    """This server's domain keys: the active one signs, all published ones are announced."""

    def __init__(self, directory: Path, keys: dict[str, DomainKey], active: str) -> None:
        self.directory = directory
        self._keys = keys
        self._active = active
        self._lock = threading.Lock()

    @classmethod
    def load_or_create(cls, data_dir: Path) -> DomainKeyring:
        """Load the keys under `data_dir`, making the first one on the first start."""
        directory = Path(data_dir) / KEY_DIR
        _private_dir(directory)
        keys = {key.id: key for key in _load_keys(directory)}
        active = _read_active(directory)
        if active not in keys:
            if keys:
                raise LocalError(
                    f"{directory / ACTIVE_NAME} names no key present in {directory}; write the "
                    f"id of one of {', '.join(sorted(keys))} into it"
                )
            key = _new_key(directory)
            keys[key.id] = key
            active = key.id
            write_atomically(directory / ACTIVE_NAME, f"{active}\n".encode(), 0o600)
        return cls(directory, keys, active)

    @property
    def active(self) -> DomainKey:
        with self._lock:
            return self._keys[self._active]

    def published(self) -> list[dict[str, str]]:
        """The DOMAIN_KEY `keys` list: the active key first, then the others by id."""
        with self._lock:
            ordered = [self._keys[self._active]] + [
                self._keys[i] for i in sorted(self._keys) if i != self._active
            ]
        return [key.entry() for key in ordered]

    def answer(self, domain: str, ttl: int = DEFAULT_TTL) -> dict[str, Any]:
        """The fields of the OK answer to DOMAIN_KEY for one of this server's domains."""
        return {"domain": domain, "keys": self.published(), "ttl": clamp_ttl(ttl)}

    def rotate(self) -> DomainKey:
        """A new key becomes active; the old ones stay published until retired."""
        with self._lock:
            key = _new_key(self.directory)
            self._keys[key.id] = key
            write_atomically(self.directory / ACTIVE_NAME, f"{key.id}\n".encode(), 0o600)
            self._active = key.id
            return key

    def retire(self, retired_id: str) -> None:
        """Stop publishing a key (once every verifier's cache of it has expired)."""
        with self._lock:
            if retired_id == self._active:
                raise LocalError("the active domain key cannot be retired; rotate first")
            if retired_id not in self._keys:
                raise LocalError(f"no domain key {retired_id!r}")
            (self.directory / f"{retired_id}.key").unlink(missing_ok=True)
            fsync_dir(self.directory)
            del self._keys[retired_id]

    def sign_auth(
        self, receiver_domain: str, nonce: str, domain: str, cert_hash_hex: str
    ) -> dict[str, str]:
        """The `data` of a DOMAIN_AUTH request, signed with the active key."""
        key = self.active
        signature = key.sign(auth_input(receiver_domain, nonce, domain, cert_hash_hex))
        return {"domain": domain, "keyId": key.id, "signature": signature}


# --- verifying --------------------------------------------------------------------------


def parse_key_list(keys: object) -> dict[str, Ed25519PublicKey]:
    """A fetched `keys` list → {recomputed id: key}. Entries of other algorithms, malformed
    ones, and ones whose claimed id is not the hash of their key are dropped, never trusted."""
    parsed: dict[str, Ed25519PublicKey] = {}
    if not isinstance(keys, list):
        return parsed
    for item in keys[:MAX_KEYS]:
        if not isinstance(item, dict) or item.get("alg") != ALG:
            continue
        text, claimed = item.get("publicKey"), item.get("id")
        if not isinstance(text, str) or not isinstance(claimed, str):
            continue
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(raw) != 32 or compute_key_id(raw) != claimed:
            continue
        parsed[claimed] = Ed25519PublicKey.from_public_bytes(raw)
    return parsed


def verify_domain_auth(
    keys: dict[str, Ed25519PublicKey],
    *,
    key_id: object,
    signature: object,
    receiver_domain: str,
    nonce: str,
    domain: str,
    cert_hash_hex: str,
) -> None:
    """Raise AUTH_FAILED unless `signature` verifies under the key `key_id` of `keys`."""
    public = keys.get(key_id) if isinstance(key_id, str) else None
    if public is None:
        raise MMTPError(AUTH_FAILED, f"{domain} publishes no domain key {key_id!r}")
    try:
        raw = base64.b64decode(signature, validate=True) if isinstance(signature, str) else b""
    except (binascii.Error, ValueError):
        raw = b""
    try:
        if len(raw) != 64:
            raise InvalidSignature
        public.verify(raw, auth_input(receiver_domain, nonce, domain, cert_hash_hex))
    except InvalidSignature:
        raise MMTPError(
            AUTH_FAILED, f"the domain signature does not verify under {domain}'s key {key_id}"
        ) from None


def check_auth_domains(receiver_domain: str, domain: str, local_domains: Iterable[str]) -> None:
    """SPEC §8.3: the signature must be for one of our domains, and not from it. Stricter than
    the letter of §8.3: no remote may authenticate as *any* domain this server serves (it would
    send us to fetch keys from ourselves, and our users' mail never arrives by relay)."""
    local = set(local_domains)
    if receiver_domain not in local:
        raise MMTPError(AUTH_FAILED, f"{receiver_domain!r} is not a domain this server serves")
    if domain in local:
        raise MMTPError(AUTH_FAILED, f"{domain} is served here; a remote cannot authenticate as it")


@dataclass
class _Fetched:
    keys: dict[str, Ed25519PublicKey]
    expires: float


class DomainKeyCache:
    """Fetched domain keys, kept for their clamped `ttl`.

    `may_fetch(domain, key_id)` says whether to ask the domain's server now: when nothing fresh
    is cached or the id is unknown, but never more than once per `refetch_interval` per domain,
    failed fetches included (so a stream of DOMAIN_AUTH with made-up ids cannot turn this server
    into a flood of DOMAIN_KEY requests). Callers: `key()`; if None and `may_fetch()`, fetch and
    `store()` (or `failed()`), then `key()` again; still None → AUTH_FAILED.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        refetch_interval: float = REFETCH_INTERVAL,
        max_domains: int = MAX_CACHED_DOMAINS,
    ) -> None:
        self.clock = clock
        self.refetch_interval = refetch_interval
        self.max_domains = max_domains
        self._entries: dict[str, _Fetched] = {}
        self._last_fetch: dict[str, float] = {}
        self._lock = threading.Lock()

    def _fresh(self, domain: str) -> _Fetched | None:
        entry = self._entries.get(domain)
        if entry is not None and entry.expires <= self.clock():
            del self._entries[domain]
            return None
        return entry

    def key(self, domain: str, key_id: str) -> Ed25519PublicKey | None:
        with self._lock:
            entry = self._fresh(domain)
            return entry.keys.get(key_id) if entry else None

    def keys(self, domain: str) -> dict[str, Ed25519PublicKey]:
        with self._lock:
            entry = self._fresh(domain)
            return dict(entry.keys) if entry else {}

    def may_fetch(self, domain: str, key_id: str) -> bool:
        with self._lock:
            entry = self._fresh(domain)
            if entry is not None and key_id in entry.keys:
                return False
            last = self._last_fetch.get(domain)
            return last is None or self.clock() - last >= self.refetch_interval

    def store(self, domain: str, answer_keys: object, ttl: object) -> dict[str, Ed25519PublicKey]:
        """Record a DOMAIN_KEY answer's `keys` and `ttl`; returns the keys kept."""
        keys = parse_key_list(answer_keys)
        with self._lock:
            now = self.clock()
            self._note_fetch(domain, now)
            self._entries[domain] = _Fetched(keys, now + clamp_ttl(ttl))
        return keys

    def failed(self, domain: str) -> None:
        """A fetch that did not get an answer: counts against the refetch interval."""
        with self._lock:
            self._note_fetch(domain, self.clock())

    def _note_fetch(self, domain: str, now: float) -> None:
        # DOMAIN_AUTH names any domain it likes: forget what no longer matters before growing.
        if len(self._last_fetch) >= self.max_domains:
            for name, when in list(self._last_fetch.items()):
                entry = self._entries.get(name)
                if now - when >= self.refetch_interval and (entry is None or entry.expires <= now):
                    del self._last_fetch[name]
                    self._entries.pop(name, None)
            while len(self._last_fetch) >= self.max_domains:
                oldest = next(iter(self._last_fetch))
                del self._last_fetch[oldest]
                self._entries.pop(oldest, None)
        self._last_fetch.pop(domain, None)
        self._last_fetch[domain] = now


# --- files ------------------------------------------------------------------------------


def _new_key(directory: Path) -> DomainKey:
    key = DomainKey(Ed25519PrivateKey.generate())
    pem = key.private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomically(directory / f"{key.id}.key", pem, 0o600)
    return key


def _load_keys(directory: Path) -> list[DomainKey]:
    keys = []
    for path in sorted(directory.glob("*.key")):
        try:
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise LocalError(f"cannot read the domain key {path}: {exc}") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise LocalError(f"{path} is not an Ed25519 private key")
        key = DomainKey(private)
        if path.stem != key.id:
            raise LocalError(f"{path} holds key {key.id}; rename it to {key.id}.key")
        keys.append(key)
    return keys


def _read_active(directory: Path) -> str | None:
    try:
        return (directory / ACTIVE_NAME).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise LocalError(f"cannot read {directory / ACTIVE_NAME}: {exc}") from None


def _private_dir(directory: Path) -> None:
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        directory.mkdir(mode=0o700, exist_ok=True)
        if directory.stat().st_mode & 0o077:
            directory.chmod(0o700)
    except OSError as exc:
        raise LocalError(f"cannot create {directory}: {exc.strerror or exc}") from None
