"""Moving a server from SQLite to PostgreSQL (`python -m mmtp_proto.migrate`, to become
`mmtp-admin migrate`): mail, keys and spent stamps arrive, verified, and the server started
on PostgreSQL serves them as before, the clients' cursors included."""

from __future__ import annotations

import psycopg
import pytest
from load_tools import (
    RECIPIENT,
    Wire,
    code_of,
    packet_for,
    receive_all,
    register,
    same_stamp_new_id,
)

from mmtp_proto import migrate

pytestmark = [pytest.mark.parametrize("backend", ["postgresql"], indirect=True)]


def test_a_store_moves_to_postgresql_and_is_served_as_before(
    start_server, tmp_path, database, capsys
):
    data_dir = tmp_path / "sqlite"
    before = start_server(data_dir=data_dir, database=None)
    register(before.plain_address)
    packets = [packet_for(body=f"message {i}") for i in range(7)]
    with Wire(before.plain_address) as wire:
        for packet in packets:
            assert wire.request("SEND", {"packet": packet})["status"] == "OK"
    with Wire(before.tls_address, tls=True) as wire:
        assert wire.auth(RECIPIENT)["status"] == "OK"
        first_page = wire.request("RECEIVE", {"email": RECIPIENT, "limit": 3})
        assert first_page["more"] is True
        assert (
            wire.request(
                "DELETE", {"email": RECIPIENT, "messageIds": [packets[0]["meta"]["messageId"]]}
            )["deleted"]
            == 1
        )
    before.stop()

    assert migrate.main(["--data-dir", str(data_dir), "--to", database]) == 0
    out = capsys.readouterr().out
    assert "2 keys, 6 messages, 7 spent_stamps" in out  # the recipient's and the sender's

    after = start_server(data_dir=tmp_path / "pg", database=database)
    assert [m["meta"]["messageId"] for m in receive_all(after.tls_address)] == [
        p["meta"]["messageId"] for p in packets[1:]
    ]
    with Wire(after.tls_address, tls=True) as wire:
        assert wire.auth(RECIPIENT)["status"] == "OK"  # the key came along
        # The cursor a client got from the SQLite server still means the same place.
        rest = wire.request("RECEIVE", {"email": RECIPIENT, "since": first_page["cursor"]})
        assert [m["meta"]["messageId"] for m in rest["messages"]] == [
            p["meta"]["messageId"] for p in packets[3:]
        ]
    with Wire(after.plain_address) as wire:
        # Spent stamps came along: a replay is refused, new mail gets a higher seq.
        assert code_of(wire.request("SEND", {"packet": same_stamp_new_id(packets[0])})) == (
            "POW_REPLAYED"
        )
        new = packet_for(body="after the move")
        assert wire.request("SEND", {"packet": new})["status"] == "OK"
    assert receive_all(after.tls_address)[-1]["meta"]["messageId"] == new["meta"]["messageId"]


def test_migrating_into_a_database_that_holds_mail_is_refused(start_server, tmp_path, database):
    data_dir = tmp_path / "sqlite"
    server = start_server(data_dir=data_dir, database=None)
    register(server.plain_address)
    server.stop()
    assert migrate.main(["--data-dir", str(data_dir), "--to", database]) == 0
    assert migrate.main(["--data-dir", str(data_dir), "--to", database]) == 1
    with psycopg.connect(database) as db:
        assert db.execute("SELECT count(*) FROM keys").fetchone() == (2,)  # bob's, the sender's


def test_migrating_a_missing_store_is_a_clear_error(tmp_path, database, capsys):
    assert migrate.main(["--data-dir", str(tmp_path / "nothing"), "--to", database]) == 1
    assert "there is no store at" in capsys.readouterr().err


def test_mmtp_admin_migrate_is_the_same_move(start_server, tmp_path, database, capsys):
    from mmtp_proto import admin_cli

    data_dir = tmp_path / "sqlite"
    server = start_server(data_dir=data_dir, database=None)
    register(server.plain_address)
    server.stop()
    assert admin_cli.main(["--data-dir", str(data_dir), "migrate", "--to", database]) == 0
    assert "2 keys, 0 messages" in capsys.readouterr().out  # bob's and the load sender's
    assert admin_cli.main(["--data-dir", str(data_dir), "migrate", "--to", "mysql://x"]) == 1
