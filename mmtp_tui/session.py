"""One account at work: its keys (unlocked once per session, kept in memory only), its
contacts, its local store, and short connections to its server. Plain module: no Textual;
the app's workers call these blocking methods from threads.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmtp_proto import errors, pgp
from mmtp_proto.address import normalize_address
from mmtp_proto.client import Client
from mmtp_proto.errors import LocalError, MMTPError
from mmtp_proto.keystore import Keystore
from mmtp_proto.known_servers import KnownServers
from mmtp_proto.message import OpenedMessage, open_message
from mmtp_proto.minter import Minter, MintStatus
from mmtp_proto.outgoing import Outgoing
from mmtp_proto.sending import (
    Outcomes,
    SendResult,
    Step,
    difficulty_of,
    send_outgoing,
    send_to_all,
)

from .config import Account, data_dir
from .contacts import CHANGED, Contacts
from .keyring import KeyRing
from .mailstore import RELAYING, MailStore

FingerprintPrompt = Callable[[str, int, str], bool]
StampCounter = Callable[[int, int], None]
"""Told (n, total) as the stamp for the n-th of several recipients starts."""


def default_store_path() -> Path:
    return data_dir() / "mail.sqlite3"


def default_keystore() -> Keystore:
    return Keystore(data_dir() / "keystore")


def error_text(exc: BaseException) -> str:
    """Words for a person: the server's message, or our own."""
    if isinstance(exc, MMTPError):
        return f"{exc.message} ({exc.code})"
    if isinstance(exc, LocalError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}"
    return f"unexpected problem: {exc}"


@dataclass
class KeyInfo:
    email: str
    fingerprint: str
    algorithm: str
    created: str
    protected: bool
    registered: bool | None = None  # None: not known (offline)


class AccountSession:
    def __init__(
        self,
        account: Account,
        *,
        store: MailStore,
        keystore: Keystore | None = None,
        known_servers: KnownServers | None = None,
        on_new_fingerprint: FingerprintPrompt | None = None,
    ) -> None:
        self.account = account
        self.store = store
        self.keystore = keystore or default_keystore()
        self.known_servers = known_servers or KnownServers()
        self.on_new_fingerprint = on_new_fingerprint
        self.contacts = Contacts.for_account(self.keystore, account.name)
        self._key: pgp.PrivateKey | None = None
        self._old_keys: list[pgp.PrivateKey] = []
        self._lock = threading.Lock()
        self.last_used = time.monotonic()  # when the unlocked key was last needed

    @property
    def address(self) -> str:
        return self.account.address

    # ------------------------------------------------------------------ keys

    def has_key(self) -> bool:
        return self.keystore.has_private(self.address)

    def needs_passphrase(self) -> bool:
        if self._key is not None or not self.has_key():
            return False
        try:
            return self.key_file_is_protected()
        except LocalError:
            return False  # not a passphrase matter: using the key says what is wrong

    def key_file_is_protected(self) -> bool:
        """Whether the key file needs a passphrase; LocalError naming the file and what to
        do when it cannot be read (damaged, not text, not a key, not readable)."""
        path = self.keystore.private_path(self.address)
        try:
            return self.keystore.private_is_protected(self.address)
        except (OSError, ValueError, LocalError) as exc:
            if isinstance(exc, UnicodeDecodeError):
                why = "it is not a text file"
            elif isinstance(exc, OSError):
                why = exc.strerror or str(exc)
            else:
                why = "not a usable key: " + str(exc).removeprefix("the key could not be read: ")
            raise LocalError(
                f"your key file {path} cannot be read ({why}); restore it from a backup, or "
                "make a new key in the Keys pane (K, then g; the damaged file is kept in the "
                "key ring)"
            ) from None

    @property
    def ring(self) -> KeyRing:
        return KeyRing(self.keystore, self.address)

    def unlock(self, passphrase: str | None) -> pgp.PrivateKey:
        """Load the private key (LocalError on a wrong passphrase); kept in memory only.
        The older keys of the ring that open with the same passphrase come along, so mail
        encrypted to them stays readable."""
        if self.has_key():
            self.key_file_is_protected()  # a readable key file, or words on what to do
        self._key = self.keystore.load_private(self.address, passphrase)
        self.last_used = time.monotonic()
        self.ring.keep_current()
        self._old_keys = self.ring.unlock(passphrase, skip=self._key.public.fingerprint)
        return self._key

    def old_keys(self) -> list[pgp.PrivateKey]:
        """Earlier private keys of this address, unlocked (see `unlock`)."""
        return list(self._old_keys)

    def forget_key_if_idle(self, idle_seconds: float, *, now: float | None = None) -> bool:
        """Like an agent's cache timeout: drop the unlocked key (and the ring's) when it
        was not needed for `idle_seconds`, so the passphrase is asked again. True if it
        was dropped. Keys without a passphrase are never "locked" this way."""
        now = time.monotonic() if now is None else now
        if self._key is None or idle_seconds <= 0 or now - self.last_used < idle_seconds:
            return False
        if not self.keystore.private_is_protected(self.address):
            return False
        self._key, self._old_keys = None, []
        return True

    def key(self) -> pgp.PrivateKey:
        self.last_used = time.monotonic()
        if self._key is None:
            if self.needs_passphrase():
                raise LocalError("the key is locked: enter its passphrase first")
            self.unlock(None)
        assert self._key is not None
        return self._key

    def set_key(self, key: pgp.PrivateKey) -> None:
        """Make `key` the current one. The key it replaces is kept in the ring first (and
        stays in memory for reading old mail): no private key is ever lost."""
        ring = self.ring
        ring.keep_current()
        ring.keep(key.armored)
        self.keystore.save_private(key, self.address)
        previous = self._key
        if previous is not None and previous.public.fingerprint != key.public.fingerprint:
            self._old_keys.insert(0, previous)
        self._key = key

    def previous_key(self) -> pgp.PrivateKey | None:
        """The key used just before the current one, if unlocked in this session."""
        return self._old_keys[0] if self._old_keys else None

    def generate_key(self, algorithm: str, passphrase: str | None) -> pgp.PrivateKey:
        """A new key: saved protected by `passphrase` (if any), kept unlocked in memory."""
        key = pgp.generate_key(
            self.address,
            self.account.display_name or self.account.name,
            algorithm=algorithm,
            passphrase=passphrase or None,
        )
        self.set_key(key)
        return key

    def import_key(self, path: Path, passphrase: str | None) -> pgp.PrivateKey:
        how = (
            "choose the ASCII-armored secret key file, as `gpg --armor --export-secret-keys "
            "ADDRESS` writes it"
        )
        try:
            text = path.expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise LocalError(f"cannot read {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise LocalError(f"{path} is not a key file (not text): {how}") from None
        try:
            pgp.armored_key_is_protected(text)  # its shape first: a wrong passphrase is not this
        except LocalError as exc:
            detail = str(exc).removeprefix("the key could not be read: ")
            raise LocalError(f"{path} is not a usable key ({detail}): {how}") from None
        key = pgp.PrivateKey.from_armored(text, passphrase or None)
        emails = [e.lower() for e in key.public.emails]
        if self.address not in emails:
            raise LocalError(
                f"that key is for {', '.join(emails) or 'no address'}, not {self.address}"
            )
        self.set_key(key)
        return key

    def change_passphrase(self, old: str | None, new: str | None) -> None:
        """Re-protect the key: `old` must open the key file (LocalError otherwise)."""
        if self.needs_passphrase() or self.key_file_is_protected():
            self.keystore.load_private(self.address, old or None)  # proves the old one
        key = self.key()
        changed = key.with_passphrase(new or None)
        self.ring.keep_current()
        self.ring.keep(changed.armored)
        self.keystore.save_private(changed, self.address)

    def key_info(self) -> KeyInfo | None:
        """Our key as the Keys pane shows it (None without a key; fingerprint hidden while
        the key is locked)."""
        if not self.has_key():
            return None
        try:
            key = self.key()
        except LocalError:
            return KeyInfo(self.address, "(locked: enter the passphrase)", "?", "?", True)
        public = key.public
        return KeyInfo(
            self.address,
            public.fingerprint,
            public.algorithm,
            public.created.strftime("%Y-%m-%d"),
            key.is_protected,
        )

    # ------------------------------------------------------------------ connections

    def client(self) -> Client:
        return Client(
            self.account.host,
            self.account.port,
            self.account.secure_port,
            use_tls=self.account.use_tls,
            verify=self.account.verify,
            ca_file=Path(self.account.ca_file) if self.account.ca_file else None,
            known_servers=self.known_servers,
            keystore=self.keystore,
            on_new_fingerprint=self.on_new_fingerprint,
            timeout=20.0,
        )

    @contextlib.contextmanager
    def connected(self, *, auth: bool = True) -> Iterator[Client]:
        client = self.client()
        client.connect()
        with contextlib.suppress(Exception):  # remembered for stamps minted offline
            self.store.set_difficulty(self.account.name, difficulty_of(client.greeting))
        try:
            if auth:
                key = self.key()
                client.add_private_key(key, self.address)
                client.auth(self.address, key)
            yield client
        finally:
            client.disconnect()

    def open_with_old_keys(self, packet: dict[str, Any]) -> OpenedMessage | None:
        """A message the current key cannot decrypt, tried with the ring's older keys."""
        for key in self._old_keys:
            opened = open_message(packet, my_key=key, sender_key_for=self.contacts.get)
            if opened.decrypted:
                return opened
        return None

    def replace_registered_key(self, old: pgp.PrivateKey) -> str:
        """The guided step after a new key: prove the old key (AUTH with it), then register
        the current one in its place. Returns the new fingerprint."""
        new = self.key()
        client = self.client()
        client.connect()
        try:
            client.add_private_key(old, self.address)
            client.auth(self.address, old)
            return client.register_key(self.address, new.public.armored)
        finally:
            client.disconnect()

    def register(self, *, replace: bool = False) -> str:
        """Register our public key; replacing one needs AUTH with the old key, so a
        replacement here is only possible while the registered key is ours."""
        key = self.key()
        with self.connected(auth=replace) as client:
            return client.register_key(self.address, key.public.armored)

    def registered_fingerprint(self) -> str | None:
        with self.connected(auth=False) as client:
            try:
                return client.request_public_key(self.address).fingerprint
            except MMTPError as exc:
                if exc.code == errors.KEY_NOT_FOUND:
                    return None
                raise

    def check(self) -> int:
        with self.connected() as client:
            return client.check(self.address)

    # ------------------------------------------------------------------ contacts

    def contact_key(self, client: Client | None, email: str) -> tuple[pgp.PublicKey | None, str]:
        """The pinned key, checked against what the server offers when connected.

        Returns (key to use, status): a changed key is NOT used: the pinned one is."""
        email = normalize_address(email)
        pinned = self.contacts.get(email)
        if client is None:
            return pinned, "pinned" if pinned else "unknown"
        try:
            offered = client.request_public_key(email)
        except MMTPError as exc:
            if exc.code in (errors.KEY_NOT_FOUND, errors.NOT_LOCAL) and pinned is not None:
                return pinned, "pinned"
            raise
        status = self.contacts.observe(email, offered)
        if status == CHANGED:
            return pinned, CHANGED
        return offered if pinned is None else pinned, status

    def fetch_contact(self, email: str) -> tuple[pgp.PublicKey | None, str]:
        with self.connected(auth=False) as client:
            return self.contact_key(client, email)

    # ------------------------------------------------------------------ messages

    def open(self, packet: dict[str, Any], client: Client | None) -> tuple[OpenedMessage, str]:
        status = "unknown"

        def sender_key_for(sender: str) -> pgp.PublicKey | None:
            nonlocal status
            try:
                key, status = self.contact_key(client, sender)
            except (MMTPError, LocalError):
                return self.contacts.get(sender)
            return key

        my_key = None
        with contextlib.suppress(LocalError):
            my_key = self.key()
        return open_message(packet, my_key=my_key, sender_key_for=sender_key_for), status

    def encryption_key(self, client: Client, recipient: str) -> pgp.PublicKey:
        """The key to encrypt to: pinned, checked against the server; never a changed one."""
        key, status = self.contact_key(client, recipient)
        if status == CHANGED:
            raise LocalError(self.contacts.changes()[recipient].text)
        if key is None:
            raise LocalError(f"no key known for {recipient}: cannot encrypt")
        return key

    def send(
        self,
        client: Client,
        outgoing: Outgoing,
        *,
        minter: Minter,
        on_step: Callable[[Step], None] | None = None,
        progress: Callable[[MintStatus], None] | None = None,
        cancel: Callable[[], bool] | None = None,
        on_stamp: StampCounter | None = None,
    ) -> SendResult | Outcomes:
        """Send through the one pipeline, then keep a copy in Sent.

        One recipient: its SendResult (errors raised, as always). Several (SPEC §9): one
        packet each, and {recipient: SendResult or the error that stopped it}; one Sent
        copy when any went out. MintCancelled is raised either way."""
        if len(outgoing.recipients()) > 1:
            return self._send_to_all(
                client,
                outgoing,
                minter=minter,
                on_step=on_step,
                progress=progress,
                cancel=cancel,
                on_stamp=on_stamp,
            )
        result = send_outgoing(
            client,
            outgoing,
            sender=self.address,
            sign_with=self.key() if outgoing.sign else None,
            key_for=lambda email: self.encryption_key(client, email),
            minter=minter,
            on_step=on_step,
            progress=progress,
            cancel=cancel,
        )
        self.keep_sent(outgoing, result)
        return result

    def _send_to_all(
        self,
        client: Client,
        outgoing: Outgoing,
        *,
        minter: Minter,
        on_step: Callable[[Step], None] | None,
        progress: Callable[[MintStatus], None] | None,
        cancel: Callable[[], bool] | None,
        on_stamp: StampCounter | None,
    ) -> Outcomes:
        if on_step is not None:
            on_step(Step.SEAL)
        counting = _CountingMinter(minter, outgoing, on_step=on_step, on_stamp=on_stamp)
        outcomes = send_to_all(
            client,
            outgoing,
            sender=self.address,
            sign_with=self.key() if outgoing.sign else None,
            key_for=lambda email: self.encryption_key(client, email),
            minter=counting,  # type: ignore[arg-type]  # only .mint is used
            progress=progress,
            cancel=cancel,
        )
        sent = [r for r in outcomes.values() if isinstance(r, SendResult)]
        if sent:
            # Any packet will do as the copy: every content is encrypted to us as well.
            self.keep_sent(outgoing, sent[0])
        return outcomes

    def keep_sent(self, outgoing: Outgoing, result: SendResult) -> None:
        """A copy of what went out, in Sent."""
        self.store.add_message(
            self.account.name,
            packet=result.packet,
            direction="out",
            folder="Sent",
            subject=outgoing.subject,
            body=outgoing.body,
            read=True,
            encrypted=result.encrypted,
            signature="verified"
            if result.signature_verified
            else ("unknown" if outgoing.sign else "unsigned"),
            signer_fingerprint=self.key().public.fingerprint if outgoing.sign else None,
            attachments=list(outgoing.attachments),
        )
        if result.queued and len(outgoing.recipients()) == 1:
            # For another domain: relaying until a delivery report says more (several
            # recipients' states are written by fanout).
            self.store.set_delivery(
                self.account.name, result.message_id, str(result.packet["recipient"]), RELAYING
            )


class _CountingMinter:
    """A Minter's stand-in that says which stamp of how many is being made (the progress
    callback alone cannot tell one recipient's stamp from the next)."""

    def __init__(
        self,
        inner: Minter,
        outgoing: Outgoing,
        *,
        on_step: Callable[[Step], None] | None,
        on_stamp: StampCounter | None,
    ) -> None:
        self.inner = inner
        self.on_step = on_step
        self.on_stamp = on_stamp
        self.total = len({a.lower() for a in outgoing.recipients()})
        self.seen: list[str] = []

    def mint(self, resource: str, bits: int, message_hash: str, **kwargs: Any) -> dict[str, Any]:
        if resource not in self.seen:  # a stamp minted again keeps its number
            self.seen.append(resource)
        if self.on_step is not None:
            self.on_step(Step.STAMP)
        if self.on_stamp is not None:
            self.on_stamp(self.seen.index(resource) + 1, max(self.total, len(self.seen)))
        token = self.inner.mint(resource, bits, message_hash, **kwargs)
        if self.on_step is not None:
            self.on_step(Step.SUBMIT)
        return token
