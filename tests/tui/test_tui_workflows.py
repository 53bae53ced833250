"""The plain workflow modules (issue 7 item 6): replying, provisioning, attachments."""

from __future__ import annotations

import os
import shutil

import pytest

from mmtp_proto.errors import LocalError
from mmtp_tui import attachments, provisioning, replying
from mmtp_tui.mailstore import StoredMessage

ALICE = "(alice)%(localhost)"
BOB = "(bob)%(localhost)"


def stored(**overrides) -> StoredMessage:
    values = dict(
        id=1,
        account="alice",
        message_id="m1",
        direction="in",
        folder="Inbox",
        sender=BOB,
        recipient=ALICE,
        subject="Plans",
        body="line one\nline two",
        timestamp=1_780_000_000,
        received_at=1_780_000_002,
        read=True,
        encrypted=True,
        decrypted=True,
        integrity_ok=True,
        signature="verified",
        signer_fingerprint=None,
        problem=None,
        in_reply_to=None,
        refs=["m0"],
        thread="m0",
        attachments=[{"filename": "a.txt"}],
    )
    values.update(overrides)
    return StoredMessage(**values)  # type: ignore[arg-type]


# ---------------------------------------------------------------- replying


def test_reply_goes_to_the_sender_in_the_same_thread():
    prefill = replying.reply(stored())
    assert (prefill.to, prefill.subject, prefill.type) == (BOB, "Re: Plans", "REPLY")
    assert prefill.in_reply_to == "m1" and prefill.references == ["m0", "m1"]
    assert prefill.body == "" and prefill.attachments == []


def test_reply_to_own_mail_goes_to_its_recipient_and_re_is_not_doubled():
    prefill = replying.reply(stored(direction="out", sender=ALICE, recipient=BOB, subject="RE: x"))
    assert prefill.to == BOB and prefill.subject == "RE: x"


def test_quoted_reply_quotes_every_line():
    body = replying.reply(stored(), quoted=True).body
    assert "> line one\n> line two" in body and f"{BOB} wrote:" in body


def test_forward_carries_headers_body_and_attachments_but_no_recipient():
    prefill = replying.forward(stored())
    assert prefill.to == "" and prefill.type == "FORWARD"
    assert prefill.subject == "Fwd: Plans"
    assert f"From: {BOB}" in prefill.body and "line two" in prefill.body
    assert prefill.attachments == [{"filename": "a.txt"}]
    assert replying.forward(stored(subject="Fwd: Plans")).subject == "Fwd: Plans"


# ---------------------------------------------------------------- provisioning


def test_account_name_from_the_address_and_free():
    assert provisioning.account_name(ALICE, []) == "alice"
    assert provisioning.account_name(ALICE, ["alice", "alice2"]) == "alice3"
    assert provisioning.account_name("not an address", []) == "me"


def test_provision_generates_and_registers(server, make_session):
    session = make_session(server, "alice", ALICE, register=False)
    session.keystore.private_path(ALICE).unlink()
    stages: list[str] = []
    fingerprint = provisioning.provision(
        session, algorithm="ed25519", passphrase=None, stage=stages.append
    )
    assert fingerprint == session.key().public.fingerprint == session.registered_fingerprint()
    assert any("free" in s for s in stages)


def test_a_taken_address_is_refused_before_any_key_is_made(server, make_session):
    """Issue 10 bug 11: the second user of a server got "already registered" only after a
    key was generated (and left behind)."""
    make_session(server, "first", ALICE)  # someone else holds the address
    second = make_session(server, "second", ALICE, register=False)
    shutil.rmtree(second.keystore.path)  # a user with no key at all yet
    with pytest.raises(LocalError, match="already registered"):
        provisioning.provision(second, algorithm="ed25519", passphrase=None)
    assert not second.has_key()
    assert not second.keystore.path.joinpath("ring").exists() or not list(
        second.keystore.path.joinpath("ring").iterdir()
    )


def test_provision_refuses_a_domain_the_server_does_not_serve(server, make_session):
    session = make_session(server, "carol", "(carol)%(example.org)", register=False)
    with pytest.raises(LocalError, match="serves"):
        provisioning.provision(session, algorithm="ed25519", passphrase=None)


# ---------------------------------------------------------------- attachments


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\evil.exe", "evil.exe"),
        ("photo\u202egpj.exe", "photogpj.exe"),
        ("a\u2066b\u2069c\x00d\ne.txt", "abcde.txt"),
        ("..", "attachment"),
        ("", "attachment"),
        ("/", "attachment"),
    ],
)
def test_safe_name_strips_paths_controls_and_bidi(given, expected):
    assert attachments.safe_name(given) == expected


def test_dot_files_are_flagged_and_can_be_unhidden():
    assert attachments.is_hidden(".bashrc") and not attachments.is_hidden("x.bashrc")
    assert attachments.unhidden(".bashrc") == "_bashrc"


def test_save_never_overwrites_and_never_follows_links(tmp_path):
    first = attachments.save(tmp_path, "a.txt", b"one")
    second = attachments.save(tmp_path, "a.txt", b"two")
    third = attachments.save(tmp_path, "../a.txt", b"three")
    assert [p.name for p in (first, second, third)] == ["a.txt", "a (1).txt", "a (2).txt"]
    assert first.read_bytes() == b"one" and second.read_bytes() == b"two"
    target = tmp_path / "outside"
    os.symlink(target, tmp_path / "b.txt")
    saved = attachments.save(tmp_path, "b.txt", b"data")
    assert saved.name == "b (1).txt" and not target.exists()
    assert attachments.save(tmp_path, "noext", b"x").name == "noext"
    assert attachments.save(tmp_path, "noext", b"x").name == "noext (1)"


# ---------------------------------------------------------------- contacts


def test_pins_are_per_account_and_old_shared_pins_are_kept(tmp_path):
    """Issue 10 bug 14: two servers may both serve `localhost`; a pin made through one
    account must not be used by another."""
    from mmtp_proto import pgp
    from mmtp_proto.keystore import Keystore
    from mmtp_tui.contacts import CHANGED, PINNED, Contacts

    keystore = Keystore(tmp_path / "keystore")
    carol = pgp.generate_key("(carol)%(localhost)", "Carol", algorithm="ed25519").public
    keystore.save_contact("(carol)%(localhost)", carol.armored)  # a pin from before
    other = pgp.generate_key("(bob)%(localhost)", "Bob", algorithm="ed25519").public
    imposter = pgp.generate_key("(bob)%(localhost)", "Bob", algorithm="ed25519").public
    work = Contacts.for_account(keystore, "work")
    home = Contacts.for_account(keystore, "home server")
    assert work.get("(carol)%(localhost)") == carol == home.get("(carol)%(localhost)")
    assert work.observe(BOB, other) == PINNED
    assert home.get(BOB) is None
    assert home.observe(BOB, imposter) == PINNED  # its own server's key, its own pin
    assert work.observe(BOB, imposter) == CHANGED
    assert Contacts.for_account(keystore, "work").get(BOB) == other


def test_a_damaged_pin_is_not_replaced_unasked(tmp_path):
    """A pinned key's file that cannot be read (damaged, overwritten) must not count as no
    pin: the server's key would be pinned in its place without the change warning."""
    from mmtp_proto import pgp
    from mmtp_proto.keystore import Keystore
    from mmtp_tui.contacts import CHANGED, UNREADABLE, Contacts

    contacts = Contacts.for_account(Keystore(tmp_path / "keystore"), "work")
    offered = pgp.generate_key(BOB, "Bob", algorithm="ed25519").public
    path = contacts.keystore.contact_path(BOB)
    for damage in (b"not a key at all\n", b"\xff\xfe\x00garbage"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(damage)
        assert contacts.observe(BOB, offered) == CHANGED
        assert path.read_bytes() == damage  # the damaged pin stays until the user decides
        change = contacts.changes()[BOB]
        assert change.pinned == UNREADABLE and change.offered == offered.fingerprint
        assert "CHANGED" in change.text
    assert contacts.pin_offered(BOB) and contacts.get(BOB) == offered
