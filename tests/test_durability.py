"""Nothing acknowledged is ever lost (SPEC §5 SEND, §4 spent stamps, §7).

The server runs as `mmtp-server` in a child process and is killed with SIGKILL at a random
moment while eight clients send; after a restart on the same data dir every acknowledged
message is there exactly once and its stamp stays spent. Storage failures are real where
the sandbox allows it (a tiny tmpfs filled to the last byte; a read-only remount between
runs) and simulated at the SQLite level otherwise (`PRAGMA query_only`, a failing commit):
the server answers INTERNAL, acknowledges nothing it did not store, and recovers.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import random
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from load_tools import (
    RECIPIENT,
    SendLoad,
    ServerProcess,
    Wire,
    code_of,
    key_for,
    mailbox_counts,
    packet_for,
    receive_all,
    register,
    same_stamp_new_id,
)

from mmtp_proto.framing import encode_frame
from mmtp_proto.store import StoreError

SENDERS = 8
ROUNDS = 4


@pytest.fixture
def spawn(tmp_path: Path):
    started: list[ServerProcess] = []

    def spawn(data_dir: Path | None = None) -> ServerProcess:
        server = ServerProcess(data_dir or tmp_path / "data", tmp_path / f"logs-{len(started)}")
        started.append(server)
        return server

    yield spawn
    for server in started:
        server.kill()


@pytest.mark.slow
def test_kill_9_mid_stream_loses_nothing_acknowledged(spawn, record_property):
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    print(f"seed {seed}")
    server = spawn().start()
    register(server.plain)
    all_acked: dict[str, dict[str, Any]] = {}
    cut_off = 0
    for round_no in range(ROUNDS):
        with SendLoad(server.plain, SENDERS, seed + 100 * round_no) as load:
            time.sleep(rng.uniform(0.3, 1.0))
            server.kill()
        assert not load.refused, load.refused[:3]
        assert load.acked, "the server was killed before it acknowledged anything"
        all_acked.update(load.acked)
        cut_off += load.cut_off

        server.start()  # same data dir
        messages = receive_all(server.tls)
        stored = collections.Counter(m["meta"]["messageId"] for m in messages)
        missing = [m for m in all_acked if stored[m] != 1]
        assert not missing, f"round {round_no}: {len(missing)} acknowledged messages lost"
        assert all(count == 1 for count in stored.values())
        for message in messages:  # and intact: the content is the one acknowledged
            acked = all_acked.get(message["meta"]["messageId"])
            if acked is not None:
                assert message["content"] == acked["content"]
                assert (
                    message["verification"]["messageHash"] == (acked["verification"]["messageHash"])
                )
        print(
            f"round {round_no}: {len(load.acked)} acknowledged, {load.cut_off} cut off, "
            f"{len(stored)} stored in total"
        )

        # Spent stamps survived the kill: a new packet carrying an old stamp is a replay,
        # while re-sending the very same packet is a harmless duplicate.
        with Wire(server.plain) as wire:
            for packet in rng.sample(list(load.acked.values()), min(10, len(load.acked))):
                answer = wire.request("SEND", {"packet": same_stamp_new_id(packet)})
                assert code_of(answer) == "POW_REPLAYED", answer
                answer = wire.request("SEND", {"packet": packet})
                assert answer["status"] == "OK" and answer["duplicate"] is True, answer
    assert cut_off > 0, "no kill landed while requests were in flight"
    assert len(mailbox_counts(server.tls)) >= len(all_acked)
    record_property("acknowledged", len(all_acked))
    record_property("cut_off", cut_off)
    server.terminate()


# ---------------------------------------------------------------------------- full disk


@pytest.fixture
def tiny_fs(tmp_path: Path):
    """A real 8 MiB tmpfs (needs root and mount); skipped where that is not possible."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        for args in (["umount", str(mount_point)], ["umount", "-l", str(mount_point)]):
            if subprocess.run(args, capture_output=True).returncode == 0:
                break
            time.sleep(0.5)


def _fill(directory: Path) -> Path:
    """Write a file until the file system is full; return it."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        with contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 512)
    return filler


@pytest.mark.slow
def test_full_disk_answers_internal_keeps_what_it_acknowledged_and_recovers(
    tiny_fs, spawn, record_property
):
    server = spawn(tiny_fs / "data").start()
    register(server.plain)
    acked: dict[str, dict[str, Any]] = {}
    failed: list[dict[str, Any]] = []
    with Wire(server.plain) as wire:
        for _ in range(3):
            packet = packet_for()
            assert wire.request("SEND", {"packet": packet})["status"] == "OK"
            acked[packet["meta"]["messageId"]] = packet
        filler = _fill(tiny_fs)
        body = "f" * 100_000
        for _ in range(60):
            packet = packet_for(body=body)
            answer = wire.request("SEND", {"packet": packet})
            if answer["status"] == "OK":
                acked[packet["meta"]["messageId"]] = packet
            else:
                assert code_of(answer) == "INTERNAL", answer
                assert "retry" in answer["error"]["message"]
                failed.append(packet)
                if len(failed) == 3:
                    break
        assert failed, "the disk never filled up"
        print(f"disk full after {len(acked)} messages: {failed_log(server)}")
        # Still usable while the disk is full: reads are answered.
        answer = wire.request("REQUEST_PUBLIC_KEY", {"email": RECIPIENT})
        assert answer["status"] == "OK"
        stored = mailbox_counts(server.tls)
        assert all(stored[m] == 1 for m in acked)
        assert not any(stored[p["meta"]["messageId"]] for p in failed)

        filler.unlink()  # space again: the same connection, the same packets now go through
        for packet in failed:
            answer = wire.request("SEND", {"packet": packet})
            assert answer["status"] == "OK" and answer["duplicate"] is False, answer
            acked[packet["meta"]["messageId"]] = packet
    server.kill()
    server.start()
    stored = mailbox_counts(server.tls)
    assert all(stored[m] == 1 for m in acked)
    assert sum(stored.values()) == len(acked)
    record_property("acknowledged_before_full", len(acked) - len(failed))
    server.terminate()


def failed_log(server: ServerProcess) -> str:
    lines = [line for line in server.log_text().splitlines() if "ERROR" in line]
    assert lines, "the server logged no storage error"
    return lines[0]


def test_read_only_file_system_at_start_is_a_clear_error(tiny_fs, spawn):
    """A data dir that cannot be written: the server says so and exits 1, no traceback."""
    server = spawn(tiny_fs / "data").start()
    register(server.plain)
    assert server.terminate() == 0
    done = subprocess.run(["mount", "-o", "remount,ro", str(tiny_fs)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot remount read-only here")
    proc = subprocess.run(
        server.command(), capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("mmtp-server: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    print(last)
    subprocess.run(["mount", "-o", "remount,rw", str(tiny_fs)], check=True)


# ---------------------------------------------------------------------------- in process


@pytest.mark.both_backends
def test_read_only_database_mid_run(start_server, tmp_path, backend):
    """The database refuses writes (SQLite `PRAGMA query_only`, SQLITE_READONLY; PostgreSQL
    `default_transaction_read_only`, as on a standby) while clients go on."""
    read_only = {
        "sqlite": ("PRAGMA query_only=ON", "PRAGMA query_only=OFF"),
        "postgresql": (
            "SET default_transaction_read_only = on",
            "SET default_transaction_read_only = off",
        ),
    }[backend]
    data_dir = tmp_path / "ro"
    server = start_server(data_dir=data_dir)
    register(server.plain_address)
    with Wire(server.plain_address) as wire:
        first = packet_for()
        assert wire.request("SEND", {"packet": first})["status"] == "OK"
        server.store._db.execute(read_only[0])
        refused = [packet_for() for _ in range(3)]
        for packet in refused:
            answer = wire.request("SEND", {"packet": packet})
            assert code_of(answer) == "INTERNAL", answer
        other = "(other)%(example.com)"
        answer = wire.request(
            "REGISTER_KEY", {"email": other, "publicKey": key_for(other).public.armored}
        )
        assert code_of(answer) == "INTERNAL"
        # Reads still work while writes fail.
        assert wire.request("REQUEST_PUBLIC_KEY", {"email": RECIPIENT})["status"] == "OK"
        assert list(mailbox_counts(server.tls_address)) == [first["meta"]["messageId"]]

        server.store._db.execute(read_only[1])
        for packet in refused:  # their stamps were not spent: the same packets go through
            answer = wire.request("SEND", {"packet": packet})
            assert answer["status"] == "OK" and answer["duplicate"] is False, answer
    server.stop()
    again = start_server(data_dir=data_dir)
    stored = mailbox_counts(again.tls_address)
    assert sorted(stored) == sorted(p["meta"]["messageId"] for p in [first, *refused])


def _fail_commit_when(store, message_id: str) -> None:
    """The next commit whose transaction holds `message_id` fails as a real one would."""
    real_commit = store.commit

    def commit() -> None:
        if store.find_message_hash(RECIPIENT, message_id) is not None:
            store.commit = real_commit
            store.rollback()
            raise StoreError("commit failed: disk I/O error (simulated)")
        real_commit()

    store.commit = commit


@pytest.mark.both_backends
def test_failed_commit_withdraws_every_answer_that_relied_on_it(start_server, tmp_path):
    """Pipelined in one turn: SEND P, SEND P again (a duplicate of the staged P), SEND Q.

    The commit fails: none of the three may be acknowledged, since none is stored.
    """
    server = start_server(data_dir=tmp_path / "commit")
    register(server.plain_address)
    p, q = packet_for(), packet_for()
    with Wire(server.plain_address) as wire:
        _fail_commit_when(server.store, p["meta"]["messageId"])
        ids = wire.send_batch([("SEND", {"packet": packet}) for packet in (p, p, q)])
        answers = [wire.read() for _ in ids]
        assert [a["id"] for a in answers] == ids
        stored = mailbox_counts(server.tls_address)
        for packet, answer in zip((p, p, q), answers, strict=True):
            if answer["status"] == "OK":
                assert stored[packet["meta"]["messageId"]] == 1, (
                    f"acknowledged but not stored: {answer}"
                )
            else:
                assert code_of(answer) == "INTERNAL"
        # Retrying is safe and stores each message once.
        for packet in (p, q):
            assert wire.request("SEND", {"packet": packet})["status"] == "OK"
    assert mailbox_counts(server.tls_address) == collections.Counter(
        [p["meta"]["messageId"], q["meta"]["messageId"]]
    )


@pytest.mark.both_backends
@pytest.mark.parametrize("request_id", [None, "x", 0], ids=["null", "string", "zero"])
def test_failed_commit_withdraws_an_answer_whatever_its_id(start_server, tmp_path, request_id):
    """`"id": null` is an id like any other (SPEC §1): the withdrawn answer echoes it."""
    server = start_server(data_dir=tmp_path / "nullid")
    register(server.plain_address)
    packet = packet_for()
    with Wire(server.plain_address) as wire:
        _fail_commit_when(server.store, packet["meta"]["messageId"])
        wire.send_bytes(
            encode_frame({"action": "SEND", "id": request_id, "data": {"packet": packet}})
        )
        answer = wire.read()
        assert "id" in answer and answer["id"] == request_id
        assert code_of(answer) == "INTERNAL", answer
        assert not mailbox_counts(server.tls_address)
        answer = wire.request("SEND", {"packet": packet})
        assert answer["status"] == "OK" and answer["duplicate"] is False


@pytest.mark.both_backends
def test_storage_error_mid_turn_withdraws_only_what_was_rolled_back(start_server, tmp_path):
    """Pipelined A, B, C; storing B fails (the transaction with A is rolled back).

    A and B are answered INTERNAL and are not stored; C, staged after the rollback and
    committed, is acknowledged and stored. An INTERNAL answer says nothing was kept: it
    must not be given for a message that was in fact stored.
    """
    server = start_server(data_dir=tmp_path / "midturn")
    register(server.plain_address)
    a, b, c = packet_for(), packet_for(), packet_for()
    store = server.store
    real_add = store.stage_message

    def stage_message(**fields: Any) -> Any:
        if fields["message_id"] == b["meta"]["messageId"]:
            raise StoreError("database or disk is full (simulated)")
        return real_add(**fields)

    store.stage_message = stage_message
    try:
        with Wire(server.plain_address) as wire:
            ids = wire.send_batch([("SEND", {"packet": packet}) for packet in (a, b, c)])
            answers = [wire.read() for _ in ids]
    finally:
        store.stage_message = real_add
    assert [answer["id"] for answer in answers] == ids
    stored = mailbox_counts(server.tls_address)
    for packet, answer in zip((a, b, c), answers, strict=True):
        if answer["status"] == "OK":
            assert stored[packet["meta"]["messageId"]] == 1, f"acknowledged, not stored: {answer}"
        else:
            assert code_of(answer) == "INTERNAL"
            assert stored[packet["meta"]["messageId"]] == 0, f"stored, yet answered {answer}"
    assert code_of(answers[1]) == "INTERNAL"


@pytest.mark.both_backends
def test_restart_after_clean_stop_keeps_everything(start_server, tmp_path):
    data_dir = tmp_path / "clean"
    server = start_server(data_dir=data_dir)
    register(server.plain_address)
    packets = [packet_for() for _ in range(20)]
    with Wire(server.plain_address) as wire:
        for packet in packets:
            wire.send_request("SEND", {"packet": packet})
        assert all(wire.read()["status"] == "OK" for _ in packets)
    server.stop()
    again = start_server(data_dir=data_dir)
    assert sorted(mailbox_counts(again.tls_address)) == sorted(
        p["meta"]["messageId"] for p in packets
    )


@pytest.mark.both_backends
def test_damaged_rows_are_skipped_and_paging_still_ends(start_server, tmp_path, database):
    """A row whose checksum fails is never served, and RECEIVE paging moves past it.

    With damaged rows at a page boundary the cursor must still advance: a client that
    pages until `more` is false (as `Client.receive_all` does) must finish.
    """
    data_dir = tmp_path / "damaged"
    server = start_server(data_dir=data_dir)
    register(server.plain_address)
    packets = [packet_for(body=f"message {i}") for i in range(6)]
    with Wire(server.plain_address) as wire:
        for packet in packets:
            assert wire.request("SEND", {"packet": packet})["status"] == "OK"
    damaged = {packets[i]["meta"]["messageId"] for i in (1, 2, 5)}
    damage = "UPDATE messages SET packet = replace(packet, 'message', 'massage')"
    if database is None:
        with contextlib.closing(sqlite3.connect(data_dir / "mmtp.db")) as db, db:
            for message_id in damaged:
                db.execute(damage + " WHERE message_id = ?", (message_id,))
    else:
        with psycopg.connect(database) as db:
            for message_id in damaged:
                db.execute(damage + " WHERE message_id = %s", (message_id,))
    good = [p["meta"]["messageId"] for p in packets if p["meta"]["messageId"] not in damaged]
    for limit in (1, 2, 3, 100):
        with Wire(server.tls_address, tls=True) as wire:
            assert wire.auth(RECIPIENT)["status"] == "OK"
            seen: list[str] = []
            since = None
            for _ in range(20):
                data: dict[str, Any] = {"email": RECIPIENT, "limit": limit}
                if since is not None:
                    data["since"] = since
                answer = wire.request("RECEIVE", data)
                assert answer["status"] == "OK", answer
                seen += [m["meta"]["messageId"] for m in answer["messages"]]
                since = answer["cursor"]
                if not answer["more"]:
                    break
            else:
                pytest.fail(f"limit {limit}: paging never ended (stuck at cursor {since})")
        assert seen == good, f"limit {limit}"
