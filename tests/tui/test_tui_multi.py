"""Several recipients from the TUI (SPEC §9): one packet each, per-recipient outcomes in
words, one Sent copy; the Cc and Bcc fields of compose. Real server on loopback, real keys."""

from __future__ import annotations

import time

from test_tui_app import BOB, SIZE
from test_tui_compose import compose_screen, notes, start_alice, wait_until
from textual import events
from textual.widgets import Input, TextArea

from mmtp_proto.dsn import build_dsn
from mmtp_proto.errors import LocalError, MMTPError
from mmtp_proto.minter import Minter
from mmtp_proto.outgoing import Outgoing
from mmtp_proto.sending import SendResult, Step
from mmtp_tui.app import MailApp
from mmtp_tui.screens.compose import outcome_words
from mmtp_tui.sync import fetch
from mmtp_tui.widgets.reader import delivery_report, render_message
from mmtp_tui.widgets.send_progress import SendProgress

ALICE = "(alice)%(localhost)"
CAROL = "(carol)%(localhost)"
DAVE = "(dave)%(localhost)"  # has no key on the server: encrypted mail cannot reach him


def test_send_to_several_gives_each_outcome_and_keeps_one_sent_copy(server, make_session):
    alice = make_session(server, "alice", ALICE)
    bob = make_session(server, "bob", BOB)
    carol = make_session(server, "carol", CAROL)
    steps: list[Step] = []
    stamps: list[tuple[int, int]] = []
    outgoing = Outgoing(to=[BOB], cc=[CAROL], bcc=[DAVE], subject="Team", body="hello all")
    with alice.connected() as client:
        outcomes = alice.send(
            client,
            outgoing,
            minter=Minter(processes=1),
            on_step=steps.append,
            on_stamp=lambda n, total: stamps.append((n, total)),
        )
    assert isinstance(outcomes, dict)
    assert isinstance(outcomes[BOB], SendResult) and isinstance(outcomes[CAROL], SendResult)
    assert isinstance(outcomes[DAVE], (MMTPError, LocalError))
    assert stamps == [(1, 3), (2, 3)]
    assert steps[0] is Step.SEAL and steps.count(Step.STAMP) == 2
    # One copy in Sent, not one per recipient.
    assert len(alice.store.folder("alice", "Sent")) == 1
    for session, name in ((bob, "bob"), (carol, "carol")):
        assert fetch(session).new == 1
        (got,) = session.store.folder(name, "Inbox")
        assert got.subject == "Team" and got.body == "hello all"

    words, failed = outcome_words(outcomes)
    assert failed == [DAVE]
    assert f"Sent to {BOB}, {CAROL}." in words
    assert f"Not sent to {DAVE}:" in words


def test_one_recipient_still_goes_the_single_path(server, make_session):
    alice = make_session(server, "alice", ALICE)
    make_session(server, "bob", BOB)
    with alice.connected() as client:
        result = alice.send(client, Outgoing(to=[BOB], subject="one"), minter=Minter())
    assert isinstance(result, SendResult) and result.packet["recipient"] == BOB


def test_outcome_words_are_plain_text_even_with_brackets() -> None:
    words, failed = outcome_words({"(x)%(y)": LocalError("no key known for [b]x[/b]")})
    assert failed == ["(x)%(y)"]
    assert words == "Not sent to (x)%(y): no key known for [b]x[/b]"


async def test_enter_moves_to_cc_bcc_subject_body_in_one_burst(server, make_session, tui_settings):
    bob = make_session(server, "bob", BOB)
    app = MailApp(tui_settings(server), known_servers=bob.known_servers)
    async with app.run_test(size=SIZE) as pilot:
        await start_alice(app, pilot)
        await pilot.press("c")
        compose = await compose_screen(app, pilot)
        for key in [*"t", "enter", *"c", "enter", *"b", "enter", *"s", "enter", *"body"]:
            app.post_message(events.Key(key, key if len(key) == 1 else None))
        await pilot.pause(0.2)
        await pilot.pause()
        values = [compose.query_one(f"#{f}", Input).value for f in ("to", "cc", "bcc", "subject")]
        assert values == ["t", "c", "b", "s"]
        assert compose.query_one("#body", TextArea).text == "body"
        # Tab walks the same way.
        compose.query_one("#to", Input).focus()
        await pilot.pause()
        order = []
        for _ in range(4):
            await pilot.press("tab")
            order.append(app.focused.id if app.focused else None)
        assert order == ["cc", "bcc", "subject", "body"]


async def test_compose_to_several_reports_each_and_keeps_the_failed_one(
    server, make_session, tui_settings
):
    bob = make_session(server, "bob", BOB)
    carol = make_session(server, "carol", CAROL)
    app = MailApp(tui_settings(server), known_servers=bob.known_servers)
    async with app.run_test(size=SIZE) as pilot:
        await start_alice(app, pilot)
        await pilot.press("c")
        compose = await compose_screen(app, pilot)
        compose.query_one("#to", Input).value = BOB
        compose.query_one("#cc", Input).value = CAROL
        compose.query_one("#bcc", Input).value = DAVE
        compose.query_one("#subject", Input).value = "Plans [b]"
        compose.query_one("#body", TextArea).text = "Friday?"
        await pilot.pause()
        seen: list[str] = []
        progress = compose.query_one("#progress", SendProgress)
        original = progress.stage
        progress.stage = lambda text: (seen.append(text), original(text))[1]  # type: ignore[method-assign]
        compose.action_send()
        await wait_until(pilot, lambda: any("Not sent to" in n for n in notes(app)))
        (note,) = [n for n in notes(app) if "Not sent to" in n]
        assert f"Sent to {BOB}, {CAROL}." in note
        assert f"Not sent to {DAVE}:" in note
        assert any("stamp 2 of 3" in text for text in seen)
        # The compose stays, holding only the recipient it could not reach.
        assert app.screen is compose and not compose.sending
        assert compose.query_one("#to", Input).value == ""
        assert compose.query_one("#cc", Input).value == ""
        assert compose.query_one("#bcc", Input).value == DAVE
    assert fetch(carol).new == 1


def test_a_dsn_reads_as_a_delivery_report_in_plain_words(server, make_session):
    """A server-made DSN (SPEC §10) fetched from a real server: the reader names the action,
    recipient, code and diagnostic as plain text (a remote's "[b]" stays "[b]")."""
    alice = make_session(server, "alice", ALICE)
    make_session(server, "bob", BOB)
    with alice.connected() as client:
        sent = alice.send(client, Outgoing(to=[BOB], subject="x", encrypt=False), minter=Minter())
    assert isinstance(sent, SendResult)
    original = {**sent.packet, "recipient": "(zed)%(far.example)"}
    now = int(time.time())
    report = build_dsn(
        original,
        action="failed",
        code="FORBIDDEN",
        diagnostic="no [b]such[/b] user",
        attempts=2,
        last_attempt_at=now,
        remote="far.example:2525",
        now=now,
    )
    report["meta"]["receivedAt"] = now
    server.store.add_report(report, now)
    assert fetch(alice).new == 1
    (got,) = [m for m in alice.store.folder("alice", "Inbox") if m.subject.startswith("Undel")]
    text = render_message(got, [got]).plain
    assert "Delivery report: ✗ Not delivered" in text
    assert "Recipient: (zed)%(far.example)" in text
    assert "Code: FORBIDDEN" in text
    assert "Diagnostic: no [b]such[/b] user" in text
    assert "Remote: far.example:2525" in text
    # Any other message has no report.
    (mine,) = alice.store.folder("alice", "Sent")
    assert delivery_report(mine) is None
