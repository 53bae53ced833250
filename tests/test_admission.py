"""The pure accounting of `admission`: networks of addresses, caps, the unfinished-frame
budget, and the minimum rate of a large unfinished frame."""

from __future__ import annotations

import pytest

from mmtp_proto.admission import RATE_FREE_BYTES, Admission, FrameProgress, network_of, over_budget


@pytest.mark.parametrize(
    ("peer", "network"),
    [
        ("203.0.113.7", "203.0.113.0/24"),
        ("203.0.113.250", "203.0.113.0/24"),
        ("127.0.0.1", "127.0.0.0/24"),
        # A dual-stack listener reports IPv4 clients like this: still their /24, not one
        # /64 shared by every IPv4 client.
        ("::ffff:203.0.113.7", "203.0.113.0/24"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::1", "::/64"),
        ("not an address", "not an address"),
    ],
)
def test_network_of(peer, network):
    assert network_of(peer) == network


def test_two_addresses_of_one_ipv6_64_share_it_and_a_neighbouring_64_does_not():
    assert network_of("2001:db8:0:1::1") == network_of("2001:db8:0:1:ffff::2")
    assert network_of("2001:db8:0:1::1") != network_of("2001:db8:0:2::1")


def test_caps_per_address_per_network_and_in_total():
    admission = Admission(total=10, per_ip=2, per_network=3)
    for peer in ("10.0.0.1", "10.0.0.1", "10.0.0.2"):
        assert admission.refusal(peer) is None
        admission.admit(peer)
    assert admission.refusal("10.0.0.1") == "from your address"
    assert admission.refusal("10.0.0.3") == "from your network (10.0.0.0/24)"
    assert admission.refusal("10.0.1.1") is None
    assert admission.count("10.0.0.9") == (0, 3)
    admission.release("10.0.0.2")
    assert admission.refusal("10.0.0.3") is None
    assert admission.total == 2


def test_ipv6_addresses_of_one_64_share_its_cap():
    admission = Admission(total=100, per_ip=32, per_network=2)
    admission.admit("2001:db8::1")
    admission.admit("2001:db8::2")
    assert admission.refusal("2001:db8::ffff:3").startswith("from your network (2001:db8::/64)")
    assert admission.refusal("2001:db8:0:1::1") is None


def test_total_cap_comes_first_and_release_forgets_empty_entries():
    admission = Admission(total=1, per_ip=1, per_network=1)
    admission.admit("10.0.0.1")
    assert admission.refusal("10.0.0.1") == "on this server"
    admission.release("10.0.0.1")
    assert admission.count("10.0.0.1") == (0, 0)
    assert admission._per_ip == {} and admission._per_network == {}


def test_budget_sheds_largest_first_until_the_rest_fit():
    partials = [("a", 100), ("b", 500), ("c", 300), ("d", 0)]
    assert over_budget(partials, 1000) == []
    assert over_budget(partials, 899) == ["b"]
    assert over_budget(partials, 400) == ["b"]
    assert over_budget(partials, 399) == ["b", "c"]
    assert over_budget(partials, 0) == ["b", "c", "a"]


def test_budget_ties_go_to_the_first_listed():
    assert over_budget([("x", 5), ("y", 5), ("z", 5)], 10) == ["x"]


def _stalled(progress: FrameProgress, now: float, unfinished: int, received: int, **kw) -> bool:
    args = dict(reading=True, grace=10.0, min_rate=1000.0)
    args.update(kw)
    return progress.stalled(now, unfinished=unfinished, received=received, **args)


def test_a_large_frame_that_stops_advancing_is_stalled_after_the_grace_period():
    big = RATE_FREE_BYTES + 1
    progress = FrameProgress()
    assert not _stalled(progress, 0.0, big, big)
    assert not _stalled(progress, 9.9, big, big + 1)  # within the grace period
    assert _stalled(progress, 10.0, big, big + 1)


def test_a_large_frame_advancing_fast_enough_is_not_stalled_in_any_window():
    progress = FrameProgress()
    received = RATE_FREE_BYTES + 1
    assert not _stalled(progress, 0.0, received, received)
    for second in range(1, 60):
        received += 1000
        assert not _stalled(progress, float(second), received, received)
    # The window from 50 s has 9,000 + 500 bytes at 60 s, short of its 10,000: stalled,
    # however much came in the windows before.
    assert _stalled(progress, 60.0, received, received + 500)


def test_small_frames_and_connections_not_read_from_are_never_stalled():
    progress = FrameProgress()
    assert not _stalled(progress, 0.0, RATE_FREE_BYTES, 10)
    assert not _stalled(progress, 100.0, RATE_FREE_BYTES, 10)
    big = RATE_FREE_BYTES * 2
    assert not _stalled(progress, 100.0, big, big, reading=False)
    assert not _stalled(progress, 200.0, big, big, reading=False)
    # Reading again starts a fresh window.
    assert not _stalled(progress, 201.0, big, big)
    assert not _stalled(progress, 210.0, big, big)
    assert _stalled(progress, 211.0, big, big)


def test_rate_zero_turns_the_rule_off():
    progress = FrameProgress()
    big = RATE_FREE_BYTES * 2
    assert not _stalled(progress, 0.0, big, big, min_rate=0)
    assert not _stalled(progress, 1000.0, big, big, min_rate=0)
