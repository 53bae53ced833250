"""The blocking client against a real server: TLS verification (tofu, ca, insecure), the
design's API end to end, safe retries, and errors that say what went wrong."""

from __future__ import annotations

import gc
import json
import socket
import stat
import time
import warnings
from pathlib import Path

import pytest
from helpers import (
    ALICE,
    BOB,
    DAVE,
    DAVE_REMOTE,
    Wire,
    as_sender,
    key_for,
    make_packet,
    registered,
    stamp_for,
)

from mmtp_proto import errors, pgp
from mmtp_proto.canonical import message_hash
from mmtp_proto.client import Client, Connection
from mmtp_proto.errors import LocalError, MMTPError
from mmtp_proto.keystore import Keystore
from mmtp_proto.known_servers import CertificateChanged, KnownServers
from mmtp_proto.message import BAD, UNKNOWN, UNSIGNED, VERIFIED, open_packet, seal
from mmtp_proto.packet import clear_content

pytestmark = pytest.mark.secure

FAKE_FINGERPRINT = ":".join(["AB"] * 32)


def dave_client(server, tmp_path: Path, **kw) -> Client:
    """A client holding dave's key, registered on `server`: authenticated as dave (the
    sender rule of SPEC §3), it may send as dave. Call `auth(DAVE)` once connected."""
    registered(server, DAVE)
    client = make_client(server, tmp_path, "dave", **kw)
    client.add_private_key(key_for(DAVE))
    return client


def make_client(server, tmp_path: Path, name: str = "client", **kw) -> Client:
    options = dict(
        server_host="127.0.0.1",
        server_port=server.plain_address[1],
        secure_port=server.tls_address[1],
        known_servers=tmp_path / f"{name}-known_servers",
        keystore=tmp_path / f"{name}-keys",
        timeout=10.0,
    )
    options.update(kw)
    return Client(**options)


def server_certificate(server) -> Path:
    return Path(server.config.data_dir) / "tls" / "server.crt"


def stored_ids(server, email):
    with Wire(server) as wire:
        assert wire.auth(email)["status"] == "OK"
        return [m["meta"]["messageId"] for m in wire.receive(email)["messages"]]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------- TLS


def test_tofu_pins_the_certificate_on_first_use(server, tmp_path):
    client = make_client(server, tmp_path)
    with client:
        assert client.greeting["tls"] is True
        assert client.connection.fingerprint == server.tls_fingerprint
    pinned = KnownServers(tmp_path / "client-known_servers")
    assert pinned.get("127.0.0.1", server.tls_address[1]) == server.tls_fingerprint
    text = pinned.path.read_text()
    assert text == f"127.0.0.1:{server.tls_address[1]} {server.tls_fingerprint}\n"
    # A second connection finds the pin and adds nothing.
    with client:
        pass
    assert pinned.path.read_text() == text


def test_tofu_refuses_loudly_when_the_certificate_changed(server, tmp_path):
    known = KnownServers(tmp_path / "client-known_servers")
    known.pin("127.0.0.1", server.tls_address[1], FAKE_FINGERPRINT)
    client = make_client(server, tmp_path)
    with pytest.raises(CertificateChanged) as caught:
        client.connect()
    error = caught.value
    message = str(error)
    assert "CHANGED" in message
    assert FAKE_FINGERPRINT in message
    assert server.tls_fingerprint in message
    assert str(known.path) in message
    assert isinstance(error, LocalError)
    assert (error.pinned, error.seen) == (FAKE_FINGERPRINT, server.tls_fingerprint)
    assert not client.is_connected()
    # The old pin is kept: only the user may replace it.
    assert known.get("127.0.0.1", server.tls_address[1]) == FAKE_FINGERPRINT
    # And the refused socket was closed, not left for the garbage collector.
    del caught, error
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        gc.collect()


def test_tofu_pin_of_another_port_does_not_apply(server, tmp_path):
    known = KnownServers(tmp_path / "client-known_servers")
    known.pin("127.0.0.1", closed_port(), FAKE_FINGERPRINT)
    with make_client(server, tmp_path) as client:
        assert client.greeting["status"] == "OK"
    assert known.get("127.0.0.1", server.tls_address[1]) == server.tls_fingerprint


def test_tofu_asks_before_pinning_and_respects_no(server, tmp_path):
    asked = []

    def refuse(host, port, fingerprint):
        asked.append((host, port, fingerprint))
        return False

    client = make_client(server, tmp_path, on_new_fingerprint=refuse)
    with pytest.raises(LocalError, match="not accepted"):
        client.connect()
    assert asked == [("127.0.0.1", server.tls_address[1], server.tls_fingerprint)]
    assert not (tmp_path / "client-known_servers").exists()

    client = make_client(server, tmp_path, on_new_fingerprint=lambda *a: True)
    with client:
        pass
    known = KnownServers(tmp_path / "client-known_servers")
    assert known.get("127.0.0.1", server.tls_address[1]) == server.tls_fingerprint


def test_ca_verification_with_the_servers_certificate_works(server, tmp_path):
    for host in ("127.0.0.1", "localhost"):
        client = make_client(
            server, tmp_path, server_host=host, verify="ca", ca_file=server_certificate(server)
        )
        with client:
            assert client.greeting["tls"] is True
            assert client.connection.fingerprint == server.tls_fingerprint
    assert not (tmp_path / "client-known_servers").exists()


def test_ca_verification_without_the_certificate_fails(server, tmp_path):
    client = make_client(server, tmp_path, verify="ca")
    with pytest.raises(LocalError) as caught:
        client.connect()
    assert "not trusted" in str(caught.value)
    assert f"127.0.0.1:{server.tls_address[1]}" in str(caught.value)


def test_ca_verification_refuses_a_name_the_certificate_does_not_carry(start_server, tmp_path):
    # The self-signed certificate names the domains, localhost, 127.0.0.1 and ::1 only.
    try:
        server = start_server(host="127.0.0.2")
    except LocalError:
        pytest.skip("127.0.0.2 is not a loopback address here")
    client = make_client(
        server, tmp_path, server_host="127.0.0.2", verify="ca", ca_file=server_certificate(server)
    )
    with pytest.raises(LocalError, match="not trusted"):
        client.connect()


def test_insecure_connects_without_pinning(server, tmp_path):
    with make_client(server, tmp_path, verify="insecure") as client:
        assert client.greeting["tls"] is True
    assert not (tmp_path / "client-known_servers").exists()


def test_unknown_verification_mode_is_a_local_error(server, tmp_path):
    with pytest.raises(LocalError, match="tofu"):
        make_client(server, tmp_path, verify="none").connect()


def test_plain_connect(server, tmp_path):
    client = make_client(server, tmp_path, use_tls=False)
    with client:
        assert client.greeting["tls"] is False
        assert client.connection.fingerprint is None
    assert not (tmp_path / "client-known_servers").exists()
    client = make_client(server, tmp_path)
    assert client.connect(secure=False)["tls"] is False
    client.disconnect()


def test_connecting_to_a_closed_port_is_a_clear_local_error(tmp_path):
    port = closed_port()
    client = Client("127.0.0.1", port, port, known_servers=tmp_path / "k", timeout=5)
    with pytest.raises(LocalError) as caught:
        client.connect()
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert "cannot connect" in message
    assert not client.is_connected()


def test_talking_to_something_that_is_not_tls_is_a_local_error(server, tmp_path):
    # The TLS client pointed at the plain port.
    client = make_client(server, tmp_path, secure_port=server.plain_address[1])
    with pytest.raises(LocalError):
        client.connect()


def test_actions_before_connecting_are_a_local_error(tmp_path):
    client = Client("127.0.0.1", 1, 1, known_servers=tmp_path / "k")
    with pytest.raises(LocalError, match="not connected"):
        client.check(ALICE)


# ---------------------------------------------------------------------------- errors


def test_server_errors_come_back_as_mmtp_error_with_code_and_message(server, tmp_path):
    with make_client(server, tmp_path) as client:
        with pytest.raises(MMTPError) as caught:
            client.request_public_key(ALICE)
        assert caught.value.code == errors.KEY_NOT_FOUND
        assert ALICE in caught.value.message
        assert str(caught.value).startswith("KEY_NOT_FOUND: ")
        # The connection is still usable after an error.
        with pytest.raises(MMTPError) as caught:
            client.check(ALICE)
        assert caught.value.code == errors.AUTH_REQUIRED


def test_auth_over_plain_is_tls_required_for_the_client(server, tmp_path):
    registered(server, ALICE)
    client = make_client(server, tmp_path, use_tls=False)
    client.add_private_key(key_for(ALICE))
    with client:
        with pytest.raises(MMTPError) as caught:
            client.auth(ALICE)
        assert caught.value.code == errors.TLS_REQUIRED
        assert client.authenticated_as is None


def test_connection_pipeline_answers_in_order_and_raises_the_first_error(server):
    registered(server, ALICE)
    connection = Connection("127.0.0.1", server.tls_address[1], verify="insecure", timeout=10)
    try:
        answers = connection.pipeline(
            [("REQUEST_PUBLIC_KEY", {"email": ALICE}), ("REQUEST_PUBLIC_KEY", {"email": ALICE})]
        )
        assert [a["email"] for a in answers] == [ALICE, ALICE]
        assert answers[0]["id"] != answers[1]["id"]
        with pytest.raises(MMTPError) as caught:
            connection.pipeline(
                [("CHECK", {"email": ALICE}), ("REQUEST_PUBLIC_KEY", {"email": ALICE})]
            )
        assert caught.value.code == errors.AUTH_REQUIRED
        # Both answers were read: the next request gets its own answer.
        assert connection.request("REQUEST_PUBLIC_KEY", {"email": ALICE})["email"] == ALICE
    finally:
        connection.close()


def test_frame_too_large_reaches_the_client_as_an_error(start_server, tmp_path):
    server = start_server(max_frame_bytes=4096)
    registered(server, BOB)
    client = make_client(server, tmp_path)
    with client:
        with pytest.raises(MMTPError) as caught:
            client.send(make_packet(DAVE, BOB, body="x" * 5000))
        assert caught.value.code == errors.FRAME_TOO_LARGE


# ---------------------------------------------------------------------------- design API


def test_design_api_end_to_end(server, tmp_path):
    alice = make_client(server, tmp_path, "alice")
    bob = make_client(server, tmp_path, "bob")
    with alice, bob:
        alice_key = alice.generate_keys(ALICE, "Alice", algorithm="ed25519")
        bob_key = bob.generate_keys(BOB, "Bob", algorithm="ed25519")
        assert alice_key.public.algorithm == "Ed25519"
        key_file = tmp_path / "alice-keys" / "alice@localhost.sec.asc"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert alice.register_public_key(ALICE) == alice_key.public.fingerprint
        assert bob.register_public_key(BOB) == bob_key.public.fingerprint
        assert alice.request_public_key(BOB).fingerprint == bob_key.public.fingerprint

        sent = alice.send_mail(ALICE, BOB, "Lunch?", "Noon at the usual place.", True, True)
        assert sent.duplicate is False
        assert (sent.encrypted, sent.signed, sent.signature_verified) == (True, True, True)
        assert len(sent.message_id) == 32

        assert bob.auth(BOB) == BOB
        assert bob.check(BOB) == 1
        received = bob.receive(BOB)
        assert (received.count, received.more) == (1, False)
        (packet,) = received.messages
        assert packet["meta"]["messageId"] == sent.message_id
        assert "Noon" not in json.dumps(packet)  # subject and body travel encrypted
        assert "Lunch" not in json.dumps(packet)

        opened = bob.open(packet)
        assert opened.subject == "Lunch?"
        assert opened.body == "Noon at the usual place."
        assert opened.encrypted and opened.decrypted
        assert opened.integrity_ok is True
        assert opened.signature == VERIFIED
        assert opened.signer_fingerprint == alice_key.public.fingerprint
        assert opened.problem is None
        assert opened.sender == ALICE and opened.recipient == BOB

        assert bob.delete(BOB, [sent.message_id]) == 1
        assert bob.check(BOB) == 0


def test_keys_generated_by_one_client_are_found_by_the_next(server, tmp_path):
    first = make_client(server, tmp_path, "alice")
    key = first.generate_keys(ALICE, "Alice", algorithm="ed25519")
    later = make_client(server, tmp_path, "alice")  # same keystore path, fresh object
    with later:
        assert later.register_public_key(ALICE) == key.public.fingerprint
        assert later.auth(ALICE) == ALICE


def test_a_server_asking_more_work_than_the_client_mints_is_refused_at_once(start_server, tmp_path):
    """A server (or a remote's POLICY) may ask for up to 40 bits: hours of a user's CPU. The
    client refuses above limits.MAX_MINT_BITS with words, before minting anything, and with
    several recipients only that one fails."""
    from mmtp_proto.limits import MAX_MINT_BITS

    server = start_server(difficulty=MAX_MINT_BITS + 2)
    registered(server, BOB)
    with dave_client(server, tmp_path) as sender:
        sender.auth(DAVE)
        # Were minting to start, this cancel would end it (MintCancelled), not the refusal.
        options = dict(encrypt=False, sign=False, cancel=lambda: True)
        with pytest.raises(LocalError, match=f"asks for a {MAX_MINT_BITS + 2}-bit stamp"):
            sender.send_mail(DAVE, BOB, "Hi", "Too much work.", **options)
        outcomes = sender.send_mail(DAVE, [BOB], "Hi", "Again.", **options)
        assert isinstance(outcomes[BOB], LocalError) and "-bit stamp" in str(outcomes[BOB])
    assert stored_ids(server, BOB) == []


def test_send_mail_in_the_clear_and_unsigned_when_asked(server, tmp_path):
    registered(server, BOB)
    with dave_client(server, tmp_path) as sender:
        # Authenticated as the sender: no signature needed.
        sender.auth(DAVE)
        sent = sender.send_mail(DAVE, BOB, "Hi", "In the clear.", encrypt=False, sign=False)
        assert (sent.encrypted, sent.signed, sent.signature_verified) == (False, False, False)
    client = make_client(server, tmp_path)
    client.add_private_key(key_for(BOB))
    with client:
        client.auth(BOB)
        (packet,) = client.receive(BOB).messages
        assert packet["content"] == {"subject": "Hi", "body": "In the clear."}
        opened = client.open(packet)
    assert (opened.subject, opened.body) == ("Hi", "In the clear.")
    assert opened.signature == UNSIGNED
    assert opened.encrypted is False and opened.integrity_ok is True


def test_send_mail_asks_for_delivery_reports_in_signed_meta(server, tmp_path):
    registered(server, BOB)
    with dave_client(server, tmp_path) as sender:
        sender.auth(DAVE)
        sent = sender.send_mail(DAVE, BOB, "Hi", "Tell me.", encrypt=False, notify=["success"])
        assert sent.signature_verified is True  # meta.notify is under the signature
        with pytest.raises(LocalError, match="notify"):
            sender.send_mail(DAVE, BOB, "Hi", "x", encrypt=False, notify=["sometimes"])
    client = make_client(server, tmp_path)
    with client:
        client.add_private_key(key_for(BOB))
        client.auth(BOB)
        (packet,) = client.receive(BOB).messages
    assert packet["meta"]["notify"] == ["success"]


def test_use_pgp_false_sends_clear_unsigned_mail(server, tmp_path):
    registered(server, BOB)
    with dave_client(server, tmp_path, use_pgp=False) as client:
        client.auth(DAVE)
        sent = client.send_mail(DAVE, BOB, "S", "B")
    assert (sent.encrypted, sent.signed) == (False, False)


def test_open_reports_tampering_and_unknown_signers(server, tmp_path):
    registered(server, ALICE, BOB)
    client = make_client(server, tmp_path)
    client.add_private_key(key_for(BOB))
    with client:
        client.send(make_packet(ALICE, BOB, sign=True, encrypt=True, body="genuine"))
        client.auth(BOB)
        (genuine,) = client.receive(BOB).messages
        assert client.open(genuine).signature == VERIFIED
        # This server would not store it (SPEC §3), but a client opens what it is handed.
        remote = make_packet(DAVE_REMOTE, BOB, sign=True, body="from afar")
        assert client.open(remote).signature == UNKNOWN  # no key for dave anywhere
        genuine["content"]["encrypted"] = genuine["content"]["encrypted"].replace("A", "B", 1)
        tampered = client.open(genuine)
    assert tampered.integrity_ok is False
    assert tampered.signature == BAD
    assert tampered.problem


def test_receive_all_pages_through_everything(server, tmp_path):
    registered(server, BOB)
    with as_sender(Wire(server)) as wire:
        ids = []
        for n in range(3):
            packet = make_packet(DAVE, BOB, body=str(n))
            assert wire.send(packet)["status"] == "OK"
            ids.append(packet["meta"]["messageId"])
    client = make_client(server, tmp_path)
    client.add_private_key(key_for(BOB))
    with client:
        client.auth(BOB)
        everything = client.receive_all(BOB)
        assert [m["meta"]["messageId"] for m in everything.messages] == ids
        assert client.receive_all(BOB, since=everything.cursor).count == 0
        page = client.receive(BOB, limit=2)
        assert (page.count, page.more) == (2, True)


# ---------------------------------------------------------------------------- retries


def _drop_after_sending(client: Client) -> None:
    """Make the next SEND reach the server but lose its answer (the link drops)."""
    connection = client.connection
    original = connection._transmit

    def send_then_drop():
        sending = any(action == "SEND" for _, action in connection.client_connection.pending)
        original()
        if sending:
            connection._transmit = original
            connection.sock.close()  # the answer can no longer arrive

    connection._transmit = send_then_drop


def test_send_retry_after_a_dropped_connection_is_a_duplicate(server, tmp_path):
    registered(server, ALICE, BOB)
    client = make_client(server, tmp_path)
    client.add_private_key(key_for(ALICE))
    with client:
        _drop_after_sending(client)
        result = client.send_mail(ALICE, BOB, "Once", "Only once, please.")
        assert result.duplicate is True
        assert result.signature_verified is True
    assert stored_ids(server, BOB) == [result.message_id]


def test_send_retry_after_a_dropped_connection_authenticates_again(server, tmp_path):
    """An unsigned local sender relies on AUTH: the retry's new connection needs it too."""
    registered(server, ALICE, BOB)
    client = make_client(server, tmp_path)
    client.add_private_key(key_for(ALICE))
    with client:
        assert client.auth(ALICE) == ALICE
        _drop_after_sending(client)
        result = client.send_mail(ALICE, BOB, "Unsigned", "Trust my AUTH.", sign=False)
        assert result.duplicate is True
        assert client.authenticated_as == ALICE
        assert client.check(ALICE) == 0  # still authenticated on the new connection
    assert stored_ids(server, BOB) == [result.message_id]


def test_send_retry_survives_a_failed_reconnect(server, tmp_path, monkeypatch):
    """A reconnect that fails (the server is briefly away) uses up a retry, not the send."""
    registered(server, ALICE, BOB)
    client = make_client(server, tmp_path)
    client.add_private_key(key_for(ALICE))
    real_connect = client.connect
    calls = []

    def flaky_connect(secure=None):
        calls.append(secure)
        if len(calls) == 1:
            raise LocalError("cannot connect to 127.0.0.1: connection refused")
        return real_connect(secure)

    with client:
        assert client.auth(ALICE) == ALICE
        monkeypatch.setattr(client, "connect", flaky_connect)
        _drop_after_sending(client)
        result = client.send_mail(ALICE, BOB, "Persistent", "Try, try again.", sign=False)
        assert result.duplicate is True
        assert client.authenticated_as == ALICE
    assert calls == [True, True]
    assert stored_ids(server, BOB) == [result.message_id]


def test_send_packet_gives_up_after_its_retries(server, tmp_path):
    registered(server, BOB)
    client = make_client(server, tmp_path)
    packet = make_packet(DAVE, BOB)
    with client:
        server.stop()
        with pytest.raises(LocalError):
            client.send_packet(packet, retries=1)


def test_send_packet_restamps_an_expired_stamp(server, tmp_path):
    registered(server, BOB)
    packet = seal(sender=DAVE, recipient=BOB, content=clear_content("Old", "stamp"))
    packet["meta"]["hashcashToken"] = stamp_for(packet, now=int(time.time()) - 200_000)
    with dave_client(server, tmp_path) as client:
        client.auth(DAVE)
        result = client.send_packet(packet)
    assert result.duplicate is False
    assert packet["meta"]["hashcashToken"]["token"].split(":")[2] != "expired"
    assert stored_ids(server, BOB) == [result.message_id]


def test_stamp_uses_the_difficulty_from_the_greeting(start_server, tmp_path):
    server = start_server(difficulty=9)
    registered(server, BOB)
    with dave_client(server, tmp_path) as client:
        client.auth(DAVE)
        sent = client.send_mail(DAVE, BOB, "S", "B", encrypt=False, sign=False)
        assert sent.packet["meta"]["hashcashToken"]["token"].startswith("1:9:")


def test_private_key_missing_is_a_local_error(server, tmp_path):
    registered(server, BOB)
    client = make_client(server, tmp_path)
    with client, pytest.raises(LocalError, match="no private key"):
        client.send_mail(ALICE, BOB, "S", "B", encrypt=False, sign=True)


def test_generate_keys_refuses_an_unknown_algorithm(tmp_path):
    client = Client(keystore=tmp_path / "keys", known_servers=tmp_path / "k")
    with pytest.raises(LocalError, match="algorithm"):
        client.generate_keys(ALICE, "Alice", algorithm="dsa512")
    assert pgp.ALGORITHMS  # the choices the message lists


# ---------------------------------------------------------------------------- hostile mail


def test_open_survives_a_hostile_encrypted_payload_delivered_by_the_server(server, tmp_path):
    """The server cannot look inside encrypted content; the recipient must not crash on it."""
    registered(server, BOB)
    hostile = {
        "nested": b"[" * 100_000 + b"]" * 100_000,
        "duplicate-keys": b'{"body":"a","body":"b","subject":"s"}',
        "not-json": b"\xff\xfe not json",
        "not-an-object": b'"just a string"',
    }
    with dave_client(server, tmp_path) as sender:
        sender.auth(DAVE)
        for body in hostile.values():
            content = {"encrypted": pgp.encrypt(body, [key_for(BOB).public])}
            packet = seal(sender=DAVE, recipient=BOB, content=clear_content("x", "y"))
            packet["content"] = content
            packet["verification"]["messageHash"] = message_hash(content)
            packet["meta"]["encrypted"] = True
            packet["meta"]["hashcashToken"] = stamp_for(packet)
            assert sender.send(packet)["status"] == "OK"
    client = make_client(server, tmp_path)
    client.add_private_key(key_for(BOB))
    with client:
        client.auth(BOB)
        stored = client.receive(BOB).messages
        assert len(stored) == len(hostile)
        for name, packet in zip(hostile, stored, strict=True):
            opened = client.open(packet)
            assert opened.encrypted is True, name
            assert opened.decrypted is False, name
            assert opened.integrity_ok is True, name
            assert opened.problem and "could not decrypt" in opened.problem, name
            assert (opened.subject, opened.body) == ("", ""), name


@pytest.mark.parametrize(
    "packet",
    [
        "not a packet",
        None,
        {"content": {"subject": "s", "body": "b"}, "verification": "broken"},
        {"content": {"subject": "s", "body": "b"}, "verification": None, "meta": "x"},
        {"content": {"subject": "s", "body": "b"}, "verification": {"signature": 7}},
        {"content": [], "verification": {}},
    ],
    ids=["string", "none", "verification-string", "meta-string", "signature-number", "list"],
)
def test_open_never_raises_for_a_malformed_packet(packet):
    opened = open_packet(packet, my_key=key_for(BOB), sender_key=key_for(ALICE).public)
    assert opened.integrity_ok is False or opened.signature != VERIFIED
    assert isinstance(opened.message_id, str)
    assert isinstance(opened.sender, str)
    assert isinstance(opened.timestamp, int)


# ---------------------------------------------------------------------------- keystore


def test_private_key_file_is_0600_even_over_a_stale_temporary_file(tmp_path):
    keystore = Keystore(tmp_path / "keys")
    path = keystore.private_path(ALICE)
    stale = path.with_name(path.name + ".tmp")
    stale.write_text("left over by someone else")
    stale.chmod(0o644)
    keystore.save_private(key_for(ALICE))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # The leftover is never written through (it could be a planted link): a fresh file is.
    assert stale.read_text() == "left over by someone else"
    assert keystore.load_private(ALICE).public.fingerprint == key_for(ALICE).public.fingerprint


def test_a_late_answer_closes_the_connection_instead_of_answering_the_next_request(
    server, monkeypatch
):
    protocol = server._protocol
    original = protocol.handle_line

    def slow(session, line):
        if b'"CHECK"' in line:
            time.sleep(1.0)
        return original(session, line)

    monkeypatch.setattr(protocol, "handle_line", slow)
    # Connected and greeted with the usual time to spare (a loaded machine may take more than
    # 0.3 s for that); only the slow CHECK gets the short timeout.
    connection = Connection(*server.plain_address, tls=False)
    connection.sock.settimeout(0.3)
    with pytest.raises(LocalError, match="did not answer in time"):
        connection.request("CHECK", {"email": "(bob)%(example.com)"})
    assert connection.closed
    with pytest.raises(LocalError, match="closed; connect again"):
        connection.request("REQUEST_PUBLIC_KEY", {"email": "(bob)%(example.com)"})
