"""Setting up an account: check the server serves the address's domain, check the address
is still free before any key is made, get a key (import, reuse or generate), register it.
Plain module: no Textual; the setup screen asks the questions and shows the stages."""

from __future__ import annotations

import getpass
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from mmtp_proto.address import parse_address
from mmtp_proto.errors import LocalError, MMTPError

from .session import AccountSession

StageReport = Callable[[str], None]


def default_local_name() -> str:
    """The login name as an address's local part (what the setup form suggests)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "me"
    name = re.sub(r"[^a-z0-9._+-]", "", user.lower()).strip(".") or "me"
    return name[:64]


def account_name(address: str, taken: Iterable[str]) -> str:
    """A short, unused name for the account of `address` (its local part)."""
    try:
        local = parse_address(address).name
    except (LocalError, MMTPError, ValueError):
        local = ""
    base = re.sub(r"[^A-Za-z0-9_-]", "", local) or "me"
    used = set(taken)
    name, n = base, 2
    while name in used:
        name, n = f"{base}{n}", n + 1
    return name


def generating_label(algorithm: str) -> str:
    label = "RSA-4096 (this can take a minute)" if algorithm == "rsa4096" else algorithm
    return f"Generating an {label} key…"


def provision(
    session: AccountSession,
    *,
    algorithm: str,
    passphrase: str | None,
    import_path: str = "",
    stage: StageReport = lambda _text: None,
) -> str:
    """Blocking (run in a worker). Returns the registered fingerprint; LocalError/MMTPError
    with words for the user otherwise. No key is generated for an address someone else
    already registered."""
    account = session.account
    stage(f"Connecting to {account.host}:{account.secure_port}…")
    with session.connected(auth=False) as client:
        domains = client.greeting.get("domains", [])
    domain = parse_address(account.address).domain
    if domains and domain not in domains:
        raise LocalError(
            f"this server serves {', '.join(domains)}, not {domain}: change the address"
        )
    stage(f"Checking that {account.address} is free…")
    registered = session.registered_fingerprint()
    if import_path:
        stage("Importing the key…")
        session.import_key(Path(import_path), passphrase or None)
    elif session.has_key():
        stage("Using the key already in the keystore…")
        session.unlock(passphrase or None)
    elif registered is not None:
        raise LocalError(
            f"{account.address} is already registered (key {registered}): choose another "
            "address, or import that key"
        )
    else:
        stage(generating_label(algorithm))
        session.generate_key(algorithm, passphrase or None)
    mine = session.key().public.fingerprint
    if registered is None:
        stage("Registering the key with the server…")
        return session.register()
    if registered != mine:
        raise LocalError(
            f"{account.address} is already registered with another key "
            f"({registered}); choose another address or import that key"
        )
    return registered
