"""The OpenPGP work the server never does on its loop thread (SPEC §7; run by `worker_pool`).

Plain functions of plain values, so they can be pickled to a worker process and run there
under a deadline and a memory limit. Each returns a small tuple; none raises for bad input.

Parsed keys are cached per worker, keyed by the armored text and bounded in bytes: parsing a
key costs 6-20 ms in PGPy, a verification with the key already parsed 0.3-0.7 ms.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from datetime import UTC, datetime

from . import openpgp_packets, pgp
from .errors import MMTPError

# What one cached key is taken to cost: PGPy's objects for an Ed25519 key take ~19 KiB for
# ~600 armored bytes; the text's share grows with signatures and user ids.
_KEY_OVERHEAD = 16 * 1024
_KEY_BYTES_PER_CHAR = 10
KEY_CACHE_BYTES = 32 * 1024 * 1024


class KeyCache:
    """Parsed public keys by armored text, least recently used first out, bounded in bytes."""

    def __init__(self, budget: int = KEY_CACHE_BYTES) -> None:
        self.budget = budget
        self.used = 0
        self._keys: OrderedDict[str, tuple[pgp.PublicKey, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, armored: str) -> pgp.PublicKey:
        """The parsed key; MMTPError (KEY_INVALID) if the text is not a public key."""
        tag = key_tag(armored)
        found = self._keys.get(tag)
        if found is not None:
            self._keys.move_to_end(tag)
            return found[0]
        key = pgp.PublicKey.from_armored(armored)
        cost = _KEY_OVERHEAD + _KEY_BYTES_PER_CHAR * len(armored)
        if cost <= self.budget:
            self._keys[tag] = (key, cost)
            self.used += cost
            while self.used > self.budget:
                _, (_, freed) = self._keys.popitem(last=False)
                self.used -= freed
        return key


_cache = KeyCache()


def key_tag(armored: str) -> str:
    """A short name for a key's text (cache key, worker affinity)."""
    return hashlib.sha256(armored.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def check_key(armored: str, email: str, now: int, registered: str | None) -> tuple[str, str, str]:
    """REGISTER_KEY's OpenPGP step: ("identical", "", "") when `armored` holds the same packets
    as the `registered` key (compared with our own bounded packet walker, before any PGPy
    parsing); ("valid", normalized armored key, fingerprint); or ("invalid", message, "")."""
    if registered is not None:
        try:
            if openpgp_packets.material_digest(armored) == openpgp_packets.material_digest(
                registered
            ):
                return ("identical", "", "")
        except ValueError:
            pass  # not even well-formed: validation says why
    try:
        key = pgp.validate_public_key_for(armored, email, now=datetime.fromtimestamp(now, UTC))
    except MMTPError as exc:
        return ("invalid", exc.message, "")
    return ("valid", key.armored, key.fingerprint)


def verify(data: bytes, signature: str, armored: str) -> bool:
    """True when `signature` is a sound detached signature over `data` by the key `armored`
    (a registered key, so it parses; its parsed form is cached)."""
    try:
        key = _cache.get(armored)
    except MMTPError:
        return False
    return pgp.verify_detached(data, signature, key)
