"""The outbound queue keeps the kill -9 promise (SPEC §7, §8.5): a home server killed right
after answering `queued: true` delivers the message, once, after it restarts."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from federation_helpers import ALICE, BOB, client_for, inbox, relay_server, wait_for
from load_tools import ServerProcess

from mmtp_proto.client import Client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class HomeServer(ServerProcess):
    """a.test as a real process, on fixed ports (so b.test's route to it survives restarts)."""

    def __init__(self, data_dir: Path, log_dir: Path, b_port: int) -> None:
        super().__init__(data_dir, log_dir)
        self.ports = (free_port(), free_port())
        self.b_port = b_port

    def command(self) -> list[str]:
        args = super().command()
        for flag, value in (("--port", self.ports[0]), ("--secure-port", self.ports[1])):
            args[args.index(flag) + 1] = str(value)
        at = args.index("--domain")
        del args[at:]  # the stock domains; a.test alone here
        return [
            *args,
            "--domain",
            "a.test",
            "--relay",
            "--relay-tls-verify",
            "tofu",
            "--route",
            f"b.test=127.0.0.1:{self.b_port}",
            "--retry-base",
            "0.3",
            # As the in-process servers: a few early failures never push a try past the wait.
            "--retry-max",
            "1",
        ]


def test_kill_9_right_after_queued_then_restart_delivers_once(tmp_path):
    # b.test listens but does not answer yet: a.test's first delivery attempt cannot finish.
    b = relay_server(tmp_path, "b.test")
    assert b.tls_address is not None and b.federation is not None
    home = HomeServer(tmp_path / "a.test", tmp_path / "logs", b.tls_address[1])
    b.federation.set_route("a.test", "127.0.0.1", home.ports[1])
    home.start()
    try:
        alice = Client(
            "127.0.0.1", secure_port=home.tls[1], verify="insecure", keystore=tmp_path / "ka"
        )
        alice.connect()
        try:
            alice.generate_keys(ALICE, "Alice", algorithm="ed25519")
            alice.register_public_key(ALICE)
            alice.auth(ALICE)
            # One recipient, as a string: no POLICY lookup (b.test would not answer it yet).
            sent = alice.send_mail(ALICE, BOB, "Durable", "Queued, then killed.", encrypt=False)
        finally:
            alice.disconnect()
        assert sent.queued
        home.kill()
        # The killed server's delivery process stops when it sees the pipe close. Were b.test
        # to answer its last attempt meanwhile, b.test would fetch a.test's keys while a.test
        # is down, and by SPEC §8.4 not again for a minute.
        home.wait_for_orphans()
        b.start()
        bob = client_for(b, tmp_path, BOB)
        try:
            home.start()
            messages = wait_for(lambda: inbox(bob, BOB), timeout=30)
            assert [m["meta"]["messageId"] for m in messages] == [sent.message_id]
            time.sleep(1.5)  # further retries, were the job not finished, would show now
            assert len(inbox(bob, BOB)) == 1
        finally:
            bob.disconnect()
    finally:
        home.kill()
        b.stop()
