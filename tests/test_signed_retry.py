"""A signed SEND retried after its OK was lost answers "duplicate" (SPEC §5: safe client
retries), even when this server process did not store it (another process, or this one
before a restart) and the sender has replaced its key since."""

from __future__ import annotations

from helpers import ALICE, BOB, Wire, make_packet, registered

from mmtp_proto import pgp


def test_a_signed_retry_is_a_duplicate_after_a_restart_and_a_key_replacement(
    start_server, tmp_path
):
    data_dir = tmp_path / "data"
    server = start_server(data_dir=data_dir)
    registered(server, ALICE, BOB)
    packet = make_packet(ALICE, BOB, sign=True)
    with Wire(server) as wire:
        first = wire.send(packet)
        assert first["status"] == "OK" and first["signatureVerified"] is True, first
        assert wire.auth(ALICE)["status"] == "OK"
        replaced = wire.register(ALICE, pgp.generate_key(ALICE, "Alice", algorithm="ed25519"))
        assert replaced["status"] == "OK", replaced
    server.stop()
    again = start_server(data_dir=data_dir)  # nothing stored lately in this process
    with Wire(again) as wire:
        retry = wire.send(packet)
    assert retry["status"] == "OK" and retry["duplicate"] is True, retry
