"""`mmtp-admin queue list | retry | remove` (SPEC §11) against a running relaying server."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from federation_helpers import ALICE, relay_server, wait_for
from helpers import Wire, key_for, make_packet

from mmtp_proto import admin_cli


def admin(capsys, data_dir: Path, *argv: str) -> tuple[int, dict]:
    status = admin_cli.main(["--data-dir", str(data_dir), "--json", *argv])
    out = capsys.readouterr().out
    return status, json.loads(out) if status == 0 else {}


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_queue_list_retry_and_remove_while_the_server_runs(tmp_path, capsys):
    a = relay_server(tmp_path, "a.test", retry_base=3600.0, retry_max=3600.0)
    assert a.federation is not None
    a.federation.set_route("b.test", "127.0.0.1", dead_port())
    a.start()
    try:
        with Wire(a) as wire:
            wire.register(ALICE)
            wire.auth(ALICE, key_for(ALICE))
            ids = [wire.send(make_packet(ALICE, f"(bob{n})%(b.test)"))["messageId"] for n in (1, 2)]
        data_dir = tmp_path / "a.test"

        def tried(times: int) -> list:
            jobs = admin(capsys, data_dir, "queue", "list")[1]["jobs"]
            done = len(jobs) == 2 and all(j["attempts"] >= times for j in jobs)
            return jobs if done else []

        jobs = wait_for(lambda: tried(1))
        assert sorted(j["messageId"] for j in jobs) == sorted(ids)
        assert {j["state"] for j in jobs} == {"queued"} and jobs[0]["lastCode"]
        # The next try is an hour away; retry brings it to now.
        assert admin(capsys, data_dir, "queue", "retry", "--all")[1] == {"retried": 2}
        wait_for(lambda: tried(2))
        first = jobs[0]["id"]
        assert admin(capsys, data_dir, "queue", "remove", str(first))[1] == {"removed": first}
        left = admin(capsys, data_dir, "queue", "list")[1]["jobs"]
        assert [j["id"] for j in left] == [jobs[1]["id"]]
        assert admin_cli.main(["--data-dir", str(data_dir), "queue", "remove", str(first)]) == 1
        assert "no queued job" in capsys.readouterr().err
    finally:
        a.stop()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_queue_commands_on_postgresql(tmp_path, capsys, database):
    a = relay_server(tmp_path, "a.test", database=database, retry_base=3600.0, retry_max=3600.0)
    assert a.federation is not None
    a.federation.set_route("b.test", "127.0.0.1", dead_port())
    a.start()
    config = tmp_path / "mmtp.toml"
    config.write_text(f'data_dir = "{tmp_path / "a.test"}"\ndatabase = "{database}"\n')

    def admin_pg(*argv: str) -> tuple[int, dict]:
        status = admin_cli.main(["--config", str(config), "--json", *argv])
        out = capsys.readouterr().out
        return status, json.loads(out) if status == 0 else {}

    try:
        with Wire(a) as wire:
            wire.register(ALICE)
            wire.auth(ALICE, key_for(ALICE))
            ids = [wire.send(make_packet(ALICE, f"(bob{n})%(b.test)"))["messageId"] for n in (1, 2)]

        def tried(times: int) -> list:
            jobs = admin_pg("queue", "list")[1]["jobs"]
            done = len(jobs) == 2 and all(j["attempts"] >= times for j in jobs)
            return jobs if done else []

        jobs = wait_for(lambda: tried(1))
        assert sorted(j["messageId"] for j in jobs) == sorted(ids)
        assert admin_pg("queue", "retry", "--all")[1] == {"retried": 2}
        wait_for(lambda: tried(2))
        first = jobs[0]["id"]
        assert admin_pg("queue", "remove", str(first))[1] == {"removed": first}
        assert [j["id"] for j in admin_pg("queue", "list")[1]["jobs"]] == [jobs[1]["id"]]
    finally:
        a.stop()
