"""SPEC §8.3 domain keys: files, rotation, the DOMAIN_KEY list, the DOMAIN_AUTH bytes."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mmtp_proto.domain_keys import (
    KEY_DIR,
    TTL_MAX,
    TTL_MIN,
    DomainKeyCache,
    DomainKeyring,
    auth_input,
    cert_hash,
    check_auth_domains,
    clamp_ttl,
    compute_key_id,
    parse_key_list,
    verify_domain_auth,
)
from mmtp_proto.errors import AUTH_FAILED, LocalError, MMTPError

CERT = hashlib.sha256(b"leaf").hexdigest()


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def verify(keys, auth: dict[str, str], **over) -> None:
    args = dict(receiver_domain="b.test", nonce="ab" * 16, domain="a.test", cert_hash_hex=CERT)
    args.update(over)
    verify_domain_auth(keys, key_id=auth["keyId"], signature=auth["signature"], **args)


def sign(ring: DomainKeyring) -> dict[str, str]:
    return ring.sign_auth("b.test", "ab" * 16, "a.test", CERT)


# --- the exact bytes ---------------------------------------------------------------------


def test_auth_input_is_exact() -> None:
    assert auth_input("b.test", "n0nce", "a.test", "ff00") == (
        b"MMTP-DOMAIN-AUTH\nb.test\nn0nce\na.test\nff00"
    )


def test_key_entry_shape() -> None:
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert compute_key_id(raw) == hashlib.sha256(raw).hexdigest()[:16]
    assert cert_hash(b"der") == hashlib.sha256(b"der").hexdigest()


def test_signature_matches_an_independent_verifier(tmp_path: Path) -> None:
    ring = DomainKeyring.load_or_create(tmp_path)
    auth = sign(ring)
    entry = ring.published()[0]
    raw = base64.b64decode(entry["publicKey"])
    assert len(raw) == 32 and entry["alg"] == "ed25519"
    assert entry["id"] == hashlib.sha256(raw).hexdigest()[:16] == auth["keyId"]
    Ed25519PublicKey.from_public_bytes(raw).verify(
        base64.b64decode(auth["signature"]),
        b"MMTP-DOMAIN-AUTH\nb.test\n" + b"ab" * 16 + b"\na.test\n" + CERT.encode(),
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, TTL_MIN),
        (59, TTL_MIN),
        (60, 60),
        (3600, 3600),
        (86_401, TTL_MAX),
        (10**12, TTL_MAX),
        (-5, TTL_MIN),
        ("3600", TTL_MIN),
        (True, TTL_MIN),
        (None, TTL_MIN),
        (3600.0, TTL_MIN),
    ],
)
def test_clamp_ttl(value: object, expected: int) -> None:
    assert clamp_ttl(value) == expected


# --- files -------------------------------------------------------------------------------


def test_made_on_first_start_private_and_reloaded(tmp_path: Path) -> None:
    ring = DomainKeyring.load_or_create(tmp_path / "data")
    directory = tmp_path / "data" / KEY_DIR
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    key_file = directory / f"{ring.active.id}.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not list(directory.glob(".*.tmp"))
    again = DomainKeyring.load_or_create(tmp_path / "data")
    assert again.active.id == ring.active.id
    assert again.published() == ring.published()


def test_loose_directory_permissions_are_tightened(tmp_path: Path) -> None:
    directory = tmp_path / KEY_DIR
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    DomainKeyring.load_or_create(tmp_path)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_rotation_publishes_old_and_new_until_retired(tmp_path: Path) -> None:
    ring = DomainKeyring.load_or_create(tmp_path)
    old = ring.active
    new = ring.rotate()
    assert ring.active.id == new.id != old.id
    assert [e["id"] for e in ring.published()] == [new.id, old.id]
    assert sign(ring)["keyId"] == new.id
    reloaded = DomainKeyring.load_or_create(tmp_path)
    assert reloaded.active.id == new.id
    assert {e["id"] for e in reloaded.published()} == {new.id, old.id}
    # A verifier holding the published list accepts signatures by either key.
    keys = parse_key_list(ring.published())
    verify(keys, sign(ring))
    old_auth = {
        "keyId": old.id,
        "signature": old.sign(auth_input("b.test", "ab" * 16, "a.test", CERT)),
    }
    verify(keys, old_auth)
    with pytest.raises(LocalError):
        reloaded.retire(new.id)
    with pytest.raises(LocalError):
        reloaded.retire("0" * 16)
    reloaded.retire(old.id)
    assert [e["id"] for e in reloaded.published()] == [new.id]
    assert [e["id"] for e in DomainKeyring.load_or_create(tmp_path).published()] == [new.id]
    with pytest.raises(MMTPError):
        verify(parse_key_list(reloaded.published()), old_auth)


def test_active_file_naming_a_missing_key_is_refused(tmp_path: Path) -> None:
    DomainKeyring.load_or_create(tmp_path)
    (tmp_path / KEY_DIR / "active").write_text("0123456789abcdef\n")
    with pytest.raises(LocalError, match="names no key"):
        DomainKeyring.load_or_create(tmp_path)


def test_misnamed_or_foreign_key_file_is_refused(tmp_path: Path) -> None:
    ring = DomainKeyring.load_or_create(tmp_path)
    directory = tmp_path / KEY_DIR
    (directory / f"{ring.active.id}.key").rename(directory / "other.key")
    with pytest.raises(LocalError, match="rename"):
        DomainKeyring.load_or_create(tmp_path)
    (directory / "other.key").write_text("not a key")
    with pytest.raises(LocalError, match="cannot read"):
        DomainKeyring.load_or_create(tmp_path)


def test_answer_fields(tmp_path: Path) -> None:
    ring = DomainKeyring.load_or_create(tmp_path)
    answer = ring.answer("a.test", ttl=10)
    assert answer == {"domain": "a.test", "keys": ring.published(), "ttl": 60}


# --- verification ------------------------------------------------------------------------


def test_verify_refuses_every_alteration(tmp_path: Path) -> None:
    ring = DomainKeyring.load_or_create(tmp_path)
    keys = parse_key_list(ring.published())
    auth = sign(ring)
    verify(keys, auth)
    for change in (
        {"receiver_domain": "c.test"},
        {"nonce": "cd" * 16},
        {"domain": "evil.test"},
        {"cert_hash_hex": hashlib.sha256(b"other leaf").hexdigest()},
    ):
        with pytest.raises(MMTPError) as info:
            verify(keys, auth, **change)
        assert info.value.code == AUTH_FAILED


@pytest.mark.parametrize(
    "signature", ["", "not base64!", base64.b64encode(b"x" * 64).decode(), None, 42, "AAAA"]
)
def test_verify_refuses_bad_signatures(tmp_path: Path, signature: object) -> None:
    ring = DomainKeyring.load_or_create(tmp_path)
    with pytest.raises(MMTPError) as info:
        verify(parse_key_list(ring.published()), {"keyId": ring.active.id, "signature": signature})
    assert info.value.code == AUTH_FAILED


def test_verify_refuses_unknown_key_id(tmp_path: Path) -> None:
    ring = DomainKeyring.load_or_create(tmp_path)
    other = DomainKeyring.load_or_create(tmp_path / "other")
    with pytest.raises(MMTPError) as info:
        verify(parse_key_list(ring.published()), sign(other))
    assert info.value.code == AUTH_FAILED
    with pytest.raises(MMTPError):
        verify(
            parse_key_list(ring.published()), {"keyId": None, "signature": sign(ring)["signature"]}
        )


def test_parse_key_list_recomputes_ids(tmp_path: Path) -> None:
    ring = DomainKeyring.load_or_create(tmp_path)
    good = ring.published()[0]
    impostor = DomainKeyring.load_or_create(tmp_path / "x").published()[0]
    lying = dict(impostor, id=good["id"])  # another key claiming the good id
    parsed = parse_key_list(
        [
            lying,
            {"alg": "rsa", "id": "x", "publicKey": "AAAA"},
            "junk",
            dict(good, publicKey="!!"),
            dict(good, publicKey=base64.b64encode(b"short").decode()),
            good,
        ]
    )
    assert list(parsed) == [good["id"]]
    # The lying entry was dropped, so a signature by the impostor does not verify as good.
    auth = DomainKeyring.load_or_create(tmp_path / "x").sign_auth(
        "b.test", "ab" * 16, "a.test", CERT
    )
    with pytest.raises(MMTPError):
        verify(parsed, dict(auth, keyId=good["id"]))
    assert parse_key_list("nope") == {} and parse_key_list(None) == {}


def test_parse_key_list_is_bounded(tmp_path: Path) -> None:
    entries = [DomainKeyring.load_or_create(tmp_path / str(i)).published()[0] for i in range(20)]
    assert len(parse_key_list(entries)) == 16


def test_check_auth_domains() -> None:
    check_auth_domains("b.test", "a.test", ["b.test", "localhost"])
    for receiver, sender in (("c.test", "a.test"), ("b.test", "b.test"), ("b.test", "localhost")):
        with pytest.raises(MMTPError) as info:
            check_auth_domains(receiver, sender, ["b.test", "localhost"])
        assert info.value.code == AUTH_FAILED


# --- the fetched-key cache ---------------------------------------------------------------


def test_cache_ttl_and_refetch_once_a_minute(tmp_path: Path) -> None:
    clock = Clock()
    cache = DomainKeyCache(clock)
    ring = DomainKeyring.load_or_create(tmp_path)
    first = ring.active.id
    assert cache.key("a.test", first) is None
    assert cache.may_fetch("a.test", first)
    cache.store("a.test", ring.published(), 120)
    assert cache.key("a.test", first) is not None
    assert not cache.may_fetch("a.test", first)
    # The domain rotates: an unknown id may be fetched, but not twice within a minute.
    second = ring.rotate().id
    assert cache.key("a.test", second) is None
    assert not cache.may_fetch("a.test", second)  # we fetched 0 s ago
    clock.now += 60
    assert cache.may_fetch("a.test", second)
    cache.store("a.test", ring.published(), 120)
    assert cache.key("a.test", second) is not None
    assert not cache.may_fetch("a.test", "f" * 16)
    clock.now += 30
    assert not cache.may_fetch("a.test", "f" * 16)
    clock.now += 30
    assert cache.may_fetch("a.test", "f" * 16)
    # Expiry after the (clamped) ttl.
    clock.now += 60
    assert cache.key("a.test", second) is None
    assert cache.keys("a.test") == {}


def test_cache_clamps_ttl(tmp_path: Path) -> None:
    clock = Clock()
    cache = DomainKeyCache(clock)
    ring = DomainKeyring.load_or_create(tmp_path)
    cache.store("a.test", ring.published(), 1)  # clamped up to 60
    clock.now += 59
    assert cache.key("a.test", ring.active.id) is not None
    cache.store("a.test", ring.published(), 10**9)  # clamped down to a day
    clock.now += 86_400
    assert cache.key("a.test", ring.active.id) is None


def test_cache_failed_fetch_waits_a_minute() -> None:
    clock = Clock()
    cache = DomainKeyCache(clock)
    cache.failed("a.test")
    assert not cache.may_fetch("a.test", "0" * 16)
    clock.now += 60
    assert cache.may_fetch("a.test", "0" * 16)
    assert cache.may_fetch("other.test", "0" * 16)  # per domain


def test_cache_stays_bounded(tmp_path: Path) -> None:
    clock = Clock()
    cache = DomainKeyCache(clock, max_domains=10)
    ring = DomainKeyring.load_or_create(tmp_path)
    cache.store("real.test", ring.published(), 3600)
    for index in range(50):
        cache.failed(f"made-up-{index}.test")
        clock.now += 1
    assert len(cache._last_fetch) <= 10
    # Pruning drops the oldest first, so the stored domain went; a fresh store works again.
    cache.store("real.test", ring.published(), 3600)
    assert cache.key("real.test", ring.active.id) is not None
    assert not cache.may_fetch("made-up-49.test", "0" * 16)
