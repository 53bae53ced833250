"""`Outgoing.notify` (SPEC §10): the delivery reports a sender asks for go in `meta.notify`,
under the signature (§3), and a value the server would refuse is refused here first."""

from __future__ import annotations

import pytest
from helpers import ALICE, BOB, key_for

from mmtp_proto import pgp
from mmtp_proto.errors import LocalError
from mmtp_proto.message import seal
from mmtp_proto.outgoing import Outgoing
from mmtp_proto.packet import signature_input_of
from mmtp_proto.sending import seal_for_all, seal_outgoing

CAROL = "(carol)%(localhost)"
EVERY = ["failure", "delay", "success"]


def _verifies(packet: dict) -> bool:
    return pgp.verify_detached(
        signature_input_of(packet), packet["verification"]["signature"], key_for(ALICE).public
    )


def _sealed(notify: list[str] | None) -> dict:
    outgoing = Outgoing(to=[BOB], subject="s", body="b", encrypt=False, notify=notify)
    return seal_outgoing(outgoing, sender=ALICE, sign_with=key_for(ALICE), key_for=key_for)


def test_notify_is_in_meta_and_signed():
    packet = _sealed(EVERY)
    assert packet["meta"]["notify"] == EVERY
    assert _verifies(packet)
    packet["meta"]["notify"] = ["failure"]
    assert not _verifies(packet)
    packet["meta"]["notify"] = EVERY
    assert _verifies(packet)
    del packet["meta"]["notify"]  # dropping it is a change too (absent ≠ present)
    assert not _verifies(packet)


def test_no_notify_leaves_it_out_for_the_server_default():
    packet = _sealed(None)
    assert "notify" not in packet["meta"] and _verifies(packet)
    # [] is not the default: it asks for no reports at all, and says so.
    assert _sealed([])["meta"]["notify"] == []


def test_every_packet_of_a_message_to_several_carries_it_signed():
    outgoing = Outgoing(to=[BOB], cc=[CAROL], bcc=["(dave)%(localhost)"], encrypt=False)
    outgoing.notify = ["success"]  # set after making it, as compose does
    packets = seal_for_all(outgoing, sender=ALICE, sign_with=key_for(ALICE), key_for=key_for)
    assert len(packets) == 3
    for packet in packets.values():
        assert packet["meta"]["notify"] == ["success"] and _verifies(packet)


@pytest.mark.parametrize(
    "bad",
    [["bounce"], ["failure", "failure"], "failure", [1], ["Failure"]],
    ids=["unknown", "twice", "not-a-list", "not-text", "case"],
)
def test_a_bad_notify_is_refused_before_anything_is_sent(bad):
    with pytest.raises(LocalError, match=r"meta\.notify"):
        Outgoing(to=[BOB], notify=bad)
    outgoing = Outgoing(to=[BOB], encrypt=False)
    outgoing.notify = bad
    with pytest.raises(LocalError, match=r"meta\.notify"):
        seal_outgoing(outgoing, sender=ALICE, sign_with=key_for(ALICE), key_for=key_for)
    with pytest.raises(LocalError, match=r"meta\.notify"):
        seal_for_all(outgoing, sender=ALICE, sign_with=key_for(ALICE), key_for=key_for)
    with pytest.raises(LocalError, match=r"meta\.notify"):
        seal(sender=ALICE, recipient=BOB, content={"subject": "", "body": ""}, notify=bad)


def test_a_draft_keeps_notify_and_forgets_a_hand_edited_bad_one():
    kept = Outgoing.from_dict(Outgoing(to=[BOB], notify=EVERY).to_dict())
    assert kept.notify == EVERY
    assert Outgoing.from_dict(Outgoing(to=[BOB]).to_dict()).notify is None
    assert Outgoing.from_dict({"to": [BOB], "notify": ["nope"]}).notify is None
