"""Outgoing: the message before it is sealed, as drafts keep it."""

from __future__ import annotations

import json
import sqlite3

import pytest

from mmtp_proto.errors import LocalError
from mmtp_proto.outgoing import FORWARD, REPLY, Outgoing
from mmtp_proto.packet import make_attachment
from mmtp_tui.mailstore import MailStore

BOB = "(bob)%(localhost)"


def full() -> Outgoing:
    return Outgoing(
        to=[BOB],
        subject="Re: plan",
        body="Yes.",
        attachments=[make_attachment("a.txt", b"a", "text/plain")],
        type=REPLY,
        in_reply_to="a" * 32,
        references=["b" * 32, "a" * 32],
        encrypt=False,
        sign=True,
    )


def test_round_trips_through_json():
    outgoing = full()
    again = Outgoing.from_dict(json.loads(json.dumps(outgoing.to_dict())))
    assert again == outgoing


def test_from_dict_tolerates_a_damaged_draft():
    again = Outgoing.from_dict({"to": "x", "type": "DSN", "attachments": [1], "encrypt": 0})
    assert again == Outgoing(encrypt=True)


def test_one_recipient_for_now():
    assert Outgoing(to=[" (Bob)%(LocalHost) "]).recipient() == BOB
    with pytest.raises(LocalError, match="no recipient"):
        Outgoing(to=["  "]).recipient()
    with pytest.raises(LocalError, match="one recipient"):
        Outgoing(to=[BOB], cc=["(carol)%(localhost)"]).recipient()


def test_unknown_type_is_refused():
    with pytest.raises(ValueError):
        Outgoing(type="DSN")


def test_callers_lists_are_copied():
    attachments = [make_attachment("a.txt", b"a")]
    outgoing = Outgoing(attachments=attachments, type=FORWARD)
    outgoing.attachments.append(make_attachment("b.txt", b"b"))
    assert len(attachments) == 1


def test_drafts_keep_the_whole_outgoing_and_update_in_place(tmp_path):
    store = MailStore(tmp_path / "m.sqlite3")
    first = store.save_draft("alice", full())
    changed = full()
    changed.body = "Yes, Friday."
    assert store.save_draft("alice", changed, draft_id=first) == first
    (draft,) = store.drafts("alice")
    assert draft.outgoing == changed and draft.recipient == BOB
    store.delete_draft(first)
    # Saving a deleted draft again makes a new one instead of losing it.
    again = store.save_draft("alice", changed, draft_id=first)
    assert [(d.id, d.outgoing) for d in store.drafts("alice")] == [(again, changed)]
    store.close()


def test_drafts_written_before_outgoing_was_kept_still_open(tmp_path):
    path = tmp_path / "m.sqlite3"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE drafts (id INTEGER PRIMARY KEY, account TEXT NOT NULL, recipient TEXT"
        " NOT NULL DEFAULT '', subject TEXT NOT NULL DEFAULT '', body TEXT NOT NULL DEFAULT '',"
        " in_reply_to TEXT, refs TEXT NOT NULL DEFAULT '[]', updated INTEGER NOT NULL)"
    )
    db.execute(
        "INSERT INTO drafts (account, recipient, subject, body, in_reply_to, refs, updated)"
        " VALUES ('alice', ?, 'Old', 'text', NULL, '[]', 1)",
        (BOB,),
    )
    db.commit()
    db.close()
    store = MailStore(path)
    (draft,) = store.drafts("alice")
    assert (draft.outgoing.to, draft.outgoing.subject, draft.outgoing.body) == (
        [BOB],
        "Old",
        "text",
    )
    store.close()
