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

from . import key_merge, openpgp_packets, pgp
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


def _digest(armored: str) -> str | None:
    try:
        return openpgp_packets.material_digest(armored)
    except ValueError:
        return None


def _validated(armored: str, email: str, when: datetime) -> tuple[str, str, str]:
    try:
        key = pgp.validate_public_key_for(armored, email, now=when)
    except MMTPError as exc:
        return ("invalid", exc.message, "")
    return ("valid", key.armored, key.fingerprint)


def validate_key(armored: str, email: str, now: int) -> tuple[str, str, str]:
    """A key another domain's server gave for `email`, judged by every REGISTER_KEY rule
    (SPEC §5, §8.3): ("valid", normalized key, fingerprint) or ("invalid", why, "")."""
    return _validated(armored, email, datetime.fromtimestamp(now, UTC))


def judge_key(
    offered: str, email: str, now: int, registered: str | None, may_replace: bool
) -> tuple[str, str, str]:
    """REGISTER_KEY's OpenPGP work (SPEC §5), as (verdict, text, fingerprint):

    - no key registered: ("valid", normalized key, fingerprint) or ("invalid", why, "");
    - ("identical", ...): the same packets as the registered key (our own bounded packet
      walker, before any PGPy parsing), or a renewal that adds none;
    - renewal (the same primary key): ("nothing-newer", ...), ("stored-revoked", ...),
      ("revoked" or "renewed", merged key, "") or ("invalid", why, "");
    - another key: ("replacement", ...) when the asker may not replace (nothing parsed),
      else validated like a new one.
    """
    when = datetime.fromtimestamp(now, UTC)
    if registered is None:
        return _validated(offered, email, when)
    registered_digest = _digest(registered)
    if registered_digest is not None and _digest(offered) == registered_digest:
        return ("identical", "", "")
    primary = key_merge.primary_fingerprint(offered)
    if primary is not None and primary == key_merge.primary_fingerprint(registered):
        try:
            merged_text = key_merge.merge(registered, offered)
        except ValueError as exc:
            return ("invalid", f"the public key could not be read: {exc}", "")
        if _digest(merged_text) == registered_digest:
            return ("identical", "", "")
        try:
            stored = _cache.get(registered)
            merged = pgp.PublicKey.from_armored(merged_text)
        except MMTPError as exc:
            return ("invalid", exc.message, "")
        if not key_merge.renews(stored, merged, when):
            return ("nothing-newer", "", "")
        if key_merge.revocation(stored, when) is not None:
            return ("stored-revoked", "", "")
        if key_merge.revocation(merged, when) == "valid":
            return ("revoked", merged_text, "")
        verdict = _validated(merged_text, email, when)
        return ("renewed", merged_text, "") if verdict[0] == "valid" else verdict
    if not may_replace:
        return ("replacement", "", "")
    return _validated(offered, email, when)


def verify(data: bytes, signature: str, armored: str) -> bool:
    """True when `signature` is a sound detached signature over `data` by the key `armored`
    (a registered key, so it parses; its parsed form is cached)."""
    try:
        key = _cache.get(armored)
    except MMTPError:
        return False
    return pgp.verify_detached(data, signature, key)
