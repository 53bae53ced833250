"""The plain modules behind issue 10's "what aerc / NeoMutt users reach for": search
operators, sorting and collapsed threads, headers in $EDITOR, signatures, reply-all, the
Outbox and folders in the store, notices and hooks, path completion. No Textual here."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import pytest
from test_tui_workflows import ALICE, BOB, stored

from mmtp_proto.minter import Minter
from mmtp_proto.outgoing import Outgoing
from mmtp_tui import attachments, headers, notices, outbox, query, replying
from mmtp_tui.mailstore import MailStore, folder_name_problem

CAROL = "(carol)%(localhost)"


def day(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())


# ---------------------------------------------------------------- query


def test_query_operators_are_parsed():
    q = query.parse('from:bob to:Alice subject:"big plans" before:2026-06-01 after:2026-05-01')
    assert q.sender == ["bob"] and q.recipient == ["alice"] and q.subject == ["big plans"]
    assert q.before == day("2026-06-01") and q.after == day("2026-05-01")
    q = query.parse("has:attachment is:unread hello is:flagged")
    assert q.has_attachment and q.unread is True and q.flagged and q.words == ["hello"]
    assert query.parse("is:read").unread is False


@pytest.mark.parametrize(
    ("text", "problem"),
    [("before:June", "YYYY-MM-DD"), ("is:spam", "is:"), ("has:pictures", "has:")],
)
def test_a_bad_operator_value_says_what_to_fix(text, problem):
    with pytest.raises(query.QueryError, match=problem):
        query.parse(text)


def test_search_matches_every_part_of_the_query():
    messages = [
        stored(id=1, sender=BOB, subject="Plans", read=False, timestamp=day("2026-05-10")),
        stored(id=2, sender=CAROL, subject="Plans", attachments=[], timestamp=day("2026-05-20")),
        stored(id=3, sender=BOB, subject="Lunch", read=True, timestamp=day("2026-06-02")),
    ]
    ids = lambda text: [m.id for m in query.search(messages, text)]  # noqa: E731
    assert ids("from:bob") == [1, 3]
    assert ids("from:bob is:unread") == [1]
    assert ids("subject:plans after:2026-05-15") == [2]
    assert ids("before:2026-05-20") == [1]  # before is exclusive, after inclusive
    assert ids("has:attachment plans") == [1]
    assert ids("to:alice lunch") == [3]
    assert ids('"line two"') == [1, 2, 3]  # bare words search the body too


def test_sorting_by_sender_and_subject_is_flat_and_ignores_re():
    messages = [
        stored(id=1, sender=CAROL, subject="Re: b", thread="t1", timestamp=3),
        stored(id=2, sender=BOB, subject="c", thread="t2", timestamp=2),
        stored(id=3, sender=BOB, subject="a", thread="t1", timestamp=1, in_reply_to="x"),
    ]
    assert [m.id for m in query.sort_messages(messages, "sender")] == [2, 3, 1]
    assert [m.id for m in query.sort_messages(messages, "subject")] == [3, 1, 2]
    assert all(m.depth == 0 for m in query.sort_messages(messages, "subject"))
    with pytest.raises(ValueError, match="sort by"):
        query.sort_messages(messages, "size")


def test_collapse_keeps_one_row_per_thread_and_counts_the_rest():
    messages = [stored(id=i, thread=t) for i, t in ((1, "a"), (2, "a"), (3, "b"), (4, "a"))]
    rows = query.collapse(messages)
    assert [(m.id, m.hidden_replies) for m in rows] == [(1, 2), (3, 0)]


def test_next_and_previous_thread():
    messages = [stored(id=i, thread=t) for i, t in ((1, "a"), (2, "a"), (3, "b"), (4, "c"))]
    assert query.next_thread_index(messages, 0, 1) == 2
    assert query.next_thread_index(messages, 2, 1) == 3
    assert query.next_thread_index(messages, 3, 1) == 3  # the last thread stays
    assert query.next_thread_index(messages, 3, -1) == 2
    assert query.next_thread_index(messages, 2, -1) == 0  # the start of thread "a"


# ---------------------------------------------------------------- compose helpers


def test_headers_block_round_trips_through_the_editor_text():
    text = headers.render([BOB, CAROL], [ALICE], "Hi: there", "body\n\nmore")
    edited = headers.parse(text)
    assert edited.to == [BOB, CAROL] and edited.cc == [ALICE]
    assert edited.subject == "Hi: there" and edited.body == "body\n\nmore"


def test_a_deleted_headers_block_keeps_everything_as_the_body():
    edited = headers.parse("Dear Bob: hello\n\nbye")
    assert edited.to == [] and edited.subject == "" and edited.body == "Dear Bob: hello\n\nbye"


def test_signature_is_appended_once_after_the_dash_dash_line(tmp_path):
    path = tmp_path / "sig"
    path.write_text("Alice\nhttps://example.org\n", encoding="utf-8")
    signature = replying.read_signature(str(path))
    body = replying.with_signature("Hello", signature)
    assert body == "Hello\n\n-- \nAlice\nhttps://example.org\n"
    assert replying.with_signature(body, signature) == body
    assert replying.read_signature(str(tmp_path / "missing")) == ""


def test_reply_all_goes_to_the_sender_and_the_others_but_not_me():
    message = stored(packet={"sender": BOB, "recipient": ALICE, "meta": {"cc": [CAROL, ALICE]}})
    prefill = replying.reply_all(message, ALICE)
    assert prefill.to == f"{BOB}, {CAROL}"
    assert prefill.type == "REPLY" and prefill.in_reply_to == "m1"
    assert replying.reply_all(stored(), ALICE).to == BOB  # nobody else: a plain reply


# ---------------------------------------------------------------- store


@pytest.fixture
def store(tmp_path):
    s = MailStore(tmp_path / "mail.sqlite3")
    yield s
    s.close()


def add(store: MailStore, message_id: str, folder: str = "Inbox", account: str = "alice") -> int:
    store.add_message(
        account,
        packet={"sender": BOB, "recipient": ALICE, "meta": {"messageId": message_id}},
        direction="in",
        folder=folder,
        subject=message_id,
        body="",
    )
    found = store.find(account, message_id)
    assert found is not None
    return found.id


def test_moves_are_undone_to_where_each_message_was(store):
    a, b = add(store, "a"), add(store, "b", "Archive")
    moves = store.move_many([a, b], "Trash")
    assert {m.folder for m in store.folder("alice", "Trash")} == {"Trash"}
    assert store.restore(moves) == 2
    assert store.get(a).folder == "Inbox" and store.get(b).folder == "Archive"


def test_flags_and_mark_all_read(store):
    a, b = add(store, "a"), add(store, "b")
    store.set_flagged(a)
    assert store.get(a).flagged and not store.get(b).flagged
    assert store.mark_all_read("alice", "Inbox") == 2
    assert store.counts("alice")["Inbox"] == (2, 0)


def test_user_folders_are_made_renamed_and_deleted_without_losing_mail(store):
    store.create_folder("alice", "Projects")
    a = add(store, "a")
    store.move_many([a], "Projects")
    assert "Projects" in store.folder_names("alice")
    assert store.folder_names("alice")[:4] == ["Inbox", "Sent", "Drafts", "Outbox"]
    assert store.rename_folder("alice", "Projects", "Work") == 1
    assert store.get(a).folder == "Work" and "Projects" not in store.user_folders("alice")
    assert store.delete_folder("alice", "Work") == 1
    assert store.get(a).folder == "Trash" and store.user_folders("alice") == []


def test_folder_names_are_checked():
    assert folder_name_problem("Trash", []) is not None
    assert folder_name_problem("outbox", []) is not None
    assert folder_name_problem("Work", ["work"]) is not None
    assert folder_name_problem("a\x1bb", []) is not None
    assert folder_name_problem(" x", []) is not None
    assert folder_name_problem("Work", []) is None


def test_combined_inbox_holds_every_accounts_inbox(store):
    add(store, "a", account="alice")
    add(store, "b", account="work")
    add(store, "c", "Archive", account="work")
    assert sorted(m.subject for m in store.inboxes(["alice", "work"])) == ["a", "b"]


def test_an_old_store_gets_the_flag_column(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite3"
    MailStore(path).close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE messages DROP COLUMN flagged")
    db.close()
    store = MailStore(path)
    add(store, "a")
    assert store.find("alice", "a").flagged is False
    store.close()


# ---------------------------------------------------------------- outbox


def test_offline_queue_stamps_with_the_last_known_difficulty_then_flush_sends(server, make_session):
    alice = make_session(server, "alice", ALICE)
    bob = make_session(server, "bob", BOB)
    alice.fetch_contact(BOB)  # pinned: the message can be sealed offline
    live = alice.account.port, alice.account.secure_port
    alice.account.port = alice.account.secure_port = 1  # nothing listens there
    result = outbox.send_or_queue(
        alice, Outgoing(to=[BOB], subject="later", body="b"), minter=Minter()
    )
    assert isinstance(result, outbox.QueueResult) and result.stamped
    (queued,) = alice.store.outbox("alice")
    assert queued.packet["meta"]["hashcashToken"]
    with pytest.raises(Exception, match="cannot connect"):
        outbox.flush(alice)
    assert len(alice.store.outbox("alice")) == 1  # still waiting
    alice.account.port, alice.account.secure_port = live
    flushed = outbox.flush(alice)
    assert len(flushed.sent) == 1 and not flushed.failed
    assert alice.store.outbox("alice") == []
    assert [m.subject for m in alice.store.folder("alice", "Sent")] == ["later"]
    from mmtp_tui.sync import fetch

    assert fetch(bob).new == 1
    assert bob.store.folder("bob", "Inbox")[0].subject == "later"


def test_without_a_pinned_key_the_outbox_seals_at_flush_time(server, make_session):
    alice = make_session(server, "alice", ALICE)
    make_session(server, "bob", BOB)
    live = alice.account.port, alice.account.secure_port
    alice.account.port = alice.account.secure_port = 1
    result = outbox.send_or_queue(alice, Outgoing(to=[BOB], subject="s"), minter=Minter())
    assert isinstance(result, outbox.QueueResult) and not result.stamped
    alice.account.port, alice.account.secure_port = live
    assert len(outbox.flush(alice).sent) == 1


# ---------------------------------------------------------------- notices, completion


def test_desktop_notices_never_carry_control_characters():
    assert (
        notices.osc_sequence("osc9", "mmtp", "2 new messages") == "\x1b]9;mmtp: 2 new messages\x07"
    )
    assert notices.osc_sequence("osc777", "m;x", "a\x1b]b\x07") == "\x1b]777;notify;m,x;a]b\x07"
    assert notices.osc_sequence("off", "mmtp", "x") == ""


def test_new_mail_hook_runs_without_a_shell_with_the_count(tmp_path):
    out = tmp_path / "out"
    script = tmp_path / "hook.py"
    script.write_text(
        "import os, sys\n"
        "open(sys.argv[1], 'w').write(os.environ['MMTP_NEW_MAIL'] + ' ' + sys.argv[2])\n",
        encoding="utf-8",
    )
    command = f"{sys.executable} {script} {out} '$(touch pwned)'"
    assert notices.run_hook(command, 3, account="alice") == 0
    assert out.read_text(encoding="utf-8") == "3 $(touch pwned)"
    assert not (tmp_path / "pwned").exists()
    assert notices.run_hook("/no/such/hook", 1) is None


def test_path_completion(tmp_path):
    (tmp_path / "report-2026.txt").write_text("x")
    (tmp_path / "report-2025.txt").write_text("x")
    (tmp_path / "photos").mkdir()
    (tmp_path / ".hidden").write_text("x")
    base = str(tmp_path) + "/"
    assert attachments.complete_path(base + "rep") == base + "report-202"
    assert attachments.complete_path(base + "ph") == base + "photos/"
    assert attachments.complete_path(base + "report-2026.txt") is None
    assert attachments.complete_path(base + "zz") is None
    assert attachments.complete_path(base + ".h") == base + ".hidden"
