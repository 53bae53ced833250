"""HashCash stamps (SPEC §4): parse, verify, mint, and the Minter (in-process or children)."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmtp_proto.errors import (
    POW_EXPIRED,
    POW_INSUFFICIENT,
    POW_INVALID,
    POW_MISMATCH,
    POW_REQUIRED,
    MMTPError,
)
from mmtp_proto.hashcash import (
    MintCancelled,
    Stamp,
    expected_tries,
    format_date,
    leading_zero_bits,
    mint,
    parse_date,
    parse_stamp,
    verify_stamp,
)
from mmtp_proto.minter import Minter, MintStatus

NOW = 1_780_000_000  # 2026-05-28 20:26:40 UTC
DATE = format_date(NOW)
BOB = "(bob)%(example.com)"
HASH = hashlib.sha256(b"the content").hexdigest()
OTHER_HASH = hashlib.sha256(b"other content").hexdigest()
RAND = "AbCdEf012345+/=="
POW_CODES = {POW_REQUIRED, POW_INVALID, POW_INSUFFICIENT, POW_EXPIRED, POW_MISMATCH}


def zero_bits(text: str) -> int:
    return leading_zero_bits(hashlib.sha256(text.encode()).digest())


def craft(
    *,
    bits: int = 8,
    date: str = DATE,
    resource: str = BOB,
    ext: str = "h=" + HASH,
    rand: str = RAND,
    version: str = "1",
    work: int | None = None,
    counter_text=str,
) -> dict:
    """A stamp built by hand: brute-force a counter until the hash has `work` zero bits.

    `counter_text` renders the counter (e.g. with leading zeros), so odd-but-working
    stamps can be made; `work` defaults to the claimed `bits`.
    """
    prefix = f"{version}:{bits}:{date}:{resource}:{ext}:{rand}:"
    need = bits if work is None else work
    for counter in range(1_000_000):
        token = prefix + counter_text(counter)
        if zero_bits(token) >= need:
            return {"token": token, "counter": counter}
    raise AssertionError("no counter found")  # pragma: no cover


def verify(obj: object, *, difficulty: int = 8, now: int = NOW, **kwargs) -> Stamp:
    kwargs.setdefault("resource", BOB)
    kwargs.setdefault("message_hash", HASH)
    return verify_stamp(obj, difficulty=difficulty, now=now, **kwargs)


def code_of(call, *args, **kwargs) -> str:
    with pytest.raises(MMTPError) as info:
        call(*args, **kwargs)
    assert info.value.message  # every refusal explains itself
    return info.value.code


def child_processes() -> set[str]:
    """Pids of our live or zombie child processes, minus multiprocessing's resource tracker."""
    me = str(os.getpid())
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if fields[1] == me and b"resource_tracker" not in cmdline:
            found.add(stat.parent.name)
    return found


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


# --- minted stamps ------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [0, 1, 8, 12])
def test_minted_stamp_verifies(bits):
    stamp = mint(BOB, bits, HASH, now=NOW)
    assert set(stamp) == {"token", "counter"}
    checked = verify(stamp, difficulty=bits)
    assert checked.token == stamp["token"]
    assert checked.counter == stamp["counter"]
    assert zero_bits(stamp["token"]) >= bits


def test_minted_stamp_has_the_spec_layout():
    stamp = parse_stamp(mint(BOB, 8, HASH, now=NOW))
    assert stamp.bits == 8
    assert stamp.date == NOW
    assert stamp.resource == BOB
    assert stamp.ext == "h=" + HASH
    assert len(stamp.rand) >= 12
    assert stamp.token == f"1:8:{DATE}:{BOB}:h={HASH}:{stamp.rand}:{stamp.counter}"


def test_mint_lowercases_the_resource():
    stamp = mint("(Bob)%(Example.COM)", 4, HASH, now=NOW)
    assert verify(stamp, difficulty=4).resource == BOB


def test_mint_uses_a_fresh_rand_each_time():
    assert parse_stamp(mint(BOB, 0, HASH)).rand != parse_stamp(mint(BOB, 0, HASH)).rand


def test_mint_with_zero_bits_takes_the_first_counter():
    assert mint(BOB, 0, HASH, now=NOW, start=41)["counter"] == 41


def test_spent_key_is_the_sha256_of_the_token():
    stamp = parse_stamp(mint(BOB, 4, HASH, now=NOW))
    assert stamp.spent_key == hashlib.sha256(stamp.token.encode()).hexdigest()
    assert stamp.expires_at() == NOW + 172_800
    assert stamp.expires_at(60) == NOW + 60


def reference_counter(prefix: str, bits: int, start: int, step: int) -> int:
    counter = start
    while zero_bits(prefix + str(counter)) < bits:
        counter += step
    return counter


@pytest.mark.parametrize(
    ("start", "step"),
    [(0, 1), (9_990, 1), (12_345, 1), (20_000, 1), (10**12, 1), (5, 3), (123_457, 1_000)],
)
def test_mint_finds_the_first_working_counter_of_its_slice(start, step):
    stamp = mint(BOB, 10, HASH, now=NOW, rand=RAND, start=start, step=step)
    prefix = stamp["token"].rsplit(":", 1)[0] + ":"
    assert stamp["counter"] == reference_counter(prefix, 10, start, step)
    verify(stamp, difficulty=10)


def test_mint_pads_the_default_rand_to_a_sha256_block_boundary():
    token = mint(BOB, 0, HASH, now=NOW)["token"]
    assert len(token.rsplit(":", 1)[0] + ":") % 64 == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bits": 257},
        {"bits": -1},
        {"bits": True},
        {"resource": "(a:b)%(example.com)"},
        {"resource": ""},
        {"message_hash": "abc"},
        {"rand": "short"},
        {"rand": "not_base64_chars"},
        {"start": -1},
        {"step": 0},
        {"resource": "(" + "a" * 500 + ")%(example.com)"},
    ],
)
def test_mint_rejects_unusable_arguments(kwargs):
    args = {"resource": BOB, "bits": 4, "message_hash": HASH} | kwargs
    with pytest.raises(ValueError):
        mint(args.pop("resource"), args.pop("bits"), args.pop("message_hash"), now=NOW, **args)


def test_cancel_stops_a_hopeless_mint_quickly():
    started = time.monotonic()
    with pytest.raises(MintCancelled):
        mint(BOB, 64, HASH, cancel=lambda: time.monotonic() - started > 0.2)
    assert time.monotonic() - started < 2


def test_progress_reports_growing_try_counts():
    seen: list[int] = []
    started = time.monotonic()
    with pytest.raises(MintCancelled):
        mint(
            BOB,
            64,
            HASH,
            progress=seen.append,
            progress_interval=0.02,
            cancel=lambda: time.monotonic() - started > 0.3,
        )
    assert len(seen) >= 3
    assert seen == sorted(seen)
    assert seen[0] >= 1000  # called between blocks, not per hash


def test_progress_ends_with_the_total_tries():
    seen: list[int] = []
    stamp = mint(BOB, 12, HASH, now=NOW, progress=seen.append, progress_interval=0)
    assert seen[-1] == stamp["counter"] + 1


def test_expected_tries_is_two_to_the_bits():
    assert expected_tries(0) == 1
    assert expected_tries(20) == 1 << 20


# --- Minter --------------------------------------------------------------------------------


@needs_proc
def test_minter_with_two_processes_verifies_and_leaves_no_children():
    before = child_processes()
    seen: list[int] = []
    stamp = Minter(processes=2).mint(BOB, 12, HASH, now=NOW, progress=seen.append)
    verify(stamp, difficulty=12)
    assert seen  # the final total at least
    assert multiprocessing.active_children() == []
    assert child_processes() <= before


@needs_proc
def test_minter_cancel_raises_and_leaves_no_children():
    before = child_processes()
    started = time.monotonic()
    with pytest.raises(MintCancelled):
        Minter(processes=2).mint(BOB, 64, HASH, cancel=lambda: time.monotonic() - started > 0.5)
    assert time.monotonic() - started < 10
    assert multiprocessing.active_children() == []
    assert child_processes() <= before


def test_minter_with_no_processes_stays_in_process(monkeypatch):
    def no_processes(*args, **kwargs):
        raise AssertionError("must not start processes")

    monkeypatch.setattr(multiprocessing, "get_context", no_processes)
    stamp = Minter(processes=0).mint(BOB, 8, HASH, now=NOW)
    verify(stamp, difficulty=8)


@needs_proc
def test_minter_in_one_child_reports_progress_and_cancel_is_a_cancel():
    """Cancel is MintCancelled whenever it comes, never "the process stopped"."""
    before = child_processes()
    seen: list[int] = []
    deadline = time.monotonic() + 30  # a spawned child can take seconds to start under load

    def cancel() -> bool:  # once the child has reported work
        return bool(seen and seen[-1] > 0) or time.monotonic() > deadline

    with pytest.raises(MintCancelled):
        Minter(processes=1, progress_interval=0.02).mint(
            BOB, 64, HASH, progress=seen.append, cancel=cancel
        )
    assert seen == sorted(seen) and seen[-1] > 0
    assert multiprocessing.active_children() == []
    assert child_processes() <= before


def test_minter_refuses_a_negative_process_count():
    with pytest.raises(ValueError):
        Minter(processes=-1)


def test_mint_status_gives_no_eta_past_the_expected_tries():
    early = MintStatus(tries=1000, bits=12, elapsed=1.0)
    assert early.rate == 1000 and early.eta == pytest.approx(3.096)
    late = MintStatus(tries=5000, bits=12, elapsed=5.0)
    assert late.eta is None and late.rate == 1000
    assert MintStatus(tries=0, bits=12, elapsed=0.0).eta is None


# --- parse_stamp: shape -------------------------------------------------------------------


def test_crafted_stamp_is_valid():
    verify(craft())


def test_missing_stamp_is_required():
    assert code_of(parse_stamp, None) == POW_REQUIRED
    assert code_of(verify, None, difficulty=20) == POW_REQUIRED


def test_required_message_names_the_difficulty():
    with pytest.raises(MMTPError, match="20 bits"):
        verify(None, difficulty=20)


@pytest.mark.parametrize("obj", [[], "1:8:x", 5, True, {}, {"counter": 0}, {"token": None}])
def test_stamp_that_is_not_a_token_object_is_invalid(obj):
    assert code_of(parse_stamp, obj) == POW_INVALID


def test_token_that_is_not_a_string_is_invalid():
    assert code_of(parse_stamp, {"token": 12, "counter": 12}) == POW_INVALID


def test_non_ascii_token_is_invalid():
    stamp = craft(resource="(bób)%(example.com)", bits=0)
    assert code_of(parse_stamp, stamp) == POW_INVALID


def test_token_over_512_characters_is_invalid():
    stamp = craft(rand="A" * 500, bits=0)
    assert len(stamp["token"]) > 512
    assert code_of(parse_stamp, stamp) == POW_INVALID


def test_token_of_exactly_512_characters_is_allowed():
    base = len(f"1:0:{DATE}:{BOB}:h={HASH}::0")
    stamp = craft(rand="A" * (512 - base), bits=0)
    assert len(stamp["token"]) == 512
    verify(stamp, difficulty=0)


@pytest.mark.parametrize("token", ["1:8:x:y:z:w", "1:8:a:b:c:d:e:f", "", "garbage"])
def test_wrong_number_of_fields_is_invalid(token):
    assert code_of(parse_stamp, {"token": token, "counter": 0}) == POW_INVALID


@pytest.mark.parametrize("version", ["0", "2", "01", "", "v1"])
def test_version_other_than_1_is_invalid(version):
    assert code_of(parse_stamp, craft(version=version, bits=0)) == POW_INVALID


@pytest.mark.parametrize("bits", ["", "+8", "-8", "08", "8.0", "0x8", " 8", "257", "٨"])
def test_bits_not_plain_decimal_up_to_256_is_invalid(bits):
    stamp = craft(bits=0)
    token = stamp["token"].split(":")
    token[1] = bits
    assert code_of(parse_stamp, {"token": ":".join(token), "counter": stamp["counter"]}) == (
        POW_INVALID
    )


@pytest.mark.parametrize("flag", [True, False])
def test_bool_counter_is_invalid(flag):
    stamp = craft(bits=0)
    token = stamp["token"].rsplit(":", 1)[0] + ":" + str(int(flag))
    assert code_of(parse_stamp, {"token": token, "counter": flag}) == POW_INVALID


@pytest.mark.parametrize("counter", [1.0, "1", None, [1]])
def test_counter_field_that_is_not_an_integer_is_invalid(counter):
    stamp = craft(bits=0)
    token = stamp["token"].rsplit(":", 1)[0] + ":1"
    assert code_of(parse_stamp, {"token": token, "counter": counter}) == POW_INVALID


@pytest.mark.parametrize(
    "counter", [10**5000, -(10**5000), 2**64], ids=["10**5000", "-10**5000", "2**64"]
)
def test_huge_counter_field_is_invalid(counter):
    assert code_of(parse_stamp, {"token": craft(bits=0)["token"], "counter": counter}) == (
        POW_INVALID
    )


def test_missing_counter_field_is_invalid():
    assert code_of(parse_stamp, {"token": craft(bits=0)["token"]}) == POW_INVALID


def test_counter_with_leading_zero_is_invalid():
    # the hash really has the work: only the spelling of the counter is wrong
    stamp = craft(bits=4, counter_text=lambda c: f"00{c}")
    assert zero_bits(stamp["token"]) >= 4
    assert code_of(verify, stamp, difficulty=4) == POW_INVALID


def test_counter_zero_is_plain_decimal():
    stamp = craft(bits=0)
    assert stamp["counter"] == 0
    assert parse_stamp(stamp).counter == 0


@pytest.mark.parametrize("render", [lambda c: f"+{c}", lambda c: f"-{c}", lambda c: f" {c}"])
def test_counter_with_sign_or_space_is_invalid(render):
    stamp = craft(bits=0, counter_text=render)
    assert code_of(parse_stamp, stamp) == POW_INVALID


def test_negative_counter_field_is_invalid():
    stamp = craft(bits=0, counter_text=lambda c: f"-{c + 1}")
    assert code_of(parse_stamp, {"token": stamp["token"], "counter": -1}) == POW_INVALID


def test_counter_unequal_to_the_counter_field_is_invalid():
    stamp = craft()
    assert code_of(verify, {"token": stamp["token"], "counter": stamp["counter"] + 1}) == (
        POW_INVALID
    )


def test_rand_under_12_characters_is_invalid():
    assert code_of(parse_stamp, craft(rand="A" * 11, bits=0)) == POW_INVALID


def test_rand_of_exactly_12_characters_is_valid():
    verify(craft(rand="A" * 12))


@pytest.mark.parametrize("rand", ["AAAAAAAAAAA-", "AAAAAAAAAAA_", "AAAAAAAAAAA.", "AAAAAAAAAAA "])
def test_rand_outside_the_base64_alphabet_is_invalid(rand):
    assert code_of(parse_stamp, craft(rand=rand, bits=0)) == POW_INVALID


@pytest.mark.parametrize(
    "date",
    [
        "2605282026",  # 10 digits
        "26052820264000",  # 14 digits
        "26052820264a",
        "260230120000",  # 30 February
        "261301120000",  # month 13
        "260528240000",  # hour 24
        "260528206000",  # minute 60
        "260528202660",  # leap second
        "٢٦٠٥٢٨٢٠٢٦٤٠",  # Arabic-Indic digits
    ],
)
def test_date_that_is_not_yymmddhhmmss_is_invalid(date):
    assert code_of(parse_date, date) == POW_INVALID
    assert code_of(parse_stamp, craft(date=date, bits=0)) == POW_INVALID


def test_dates_round_trip_in_utc():
    assert format_date(NOW) == "260528202640"
    assert parse_date("260528202640") == NOW
    assert parse_date("000101000000") == 946_684_800
    assert parse_date(format_date(4_102_444_799)) == 4_102_444_799  # 2099-12-31 23:59:59


def test_format_date_refuses_years_two_digits_cannot_name():
    with pytest.raises(ValueError):
        format_date(0)
    with pytest.raises(ValueError):
        format_date(4_102_444_800)  # 2100


def test_leading_zero_bits_counts_bits_not_hex_digits():
    assert leading_zero_bits(b"\x00" * 32) == 256
    assert leading_zero_bits(b"\xff" + b"\x00" * 31) == 0
    assert leading_zero_bits(b"\x00\x01" + b"\xff" * 30) == 15
    assert leading_zero_bits(b"\x00\x80") == 8
    assert leading_zero_bits(b"\x10") == 3


# --- verify_stamp: work, date, binding ----------------------------------------------------


def test_claimed_bits_below_difficulty_is_insufficient():
    assert code_of(verify, craft(bits=8), difficulty=9) == POW_INSUFFICIENT


def test_insufficient_message_says_which_difficulty_to_mint_at():
    with pytest.raises(MMTPError, match="mint a new stamp at 20 bits"):
        verify(craft(bits=8), difficulty=20)


def test_insufficient_is_checked_before_the_hash():
    stamp = craft(bits=4, work=0)  # claims 4 bits it may not have
    assert code_of(verify, stamp, difficulty=5) == POW_INSUFFICIENT


def test_hash_without_the_claimed_bits_is_invalid():
    stamp = craft(bits=30, work=0)  # hash has far fewer than 30 zero bits
    assert zero_bits(stamp["token"]) < 30
    assert code_of(verify, stamp, difficulty=8) == POW_INVALID


def test_more_bits_than_the_difficulty_is_fine():
    verify(craft(bits=10), difficulty=4)


def test_stamp_exactly_at_the_validity_edge_is_accepted():
    verify(craft(), now=NOW + 172_800)


def test_stamp_one_second_past_validity_is_expired():
    assert code_of(verify, craft(), now=NOW + 172_801) == POW_EXPIRED


def test_stamp_exactly_one_hour_in_the_future_is_accepted():
    verify(craft(), now=NOW - 3_600)


def test_stamp_more_than_one_hour_in_the_future_is_expired():
    with pytest.raises(MMTPError, match="clock") as info:
        verify(craft(), now=NOW - 3_601)
    assert info.value.code == POW_EXPIRED


def test_validity_window_is_configurable():
    stamp = craft()
    verify(stamp, now=NOW + 60, validity_seconds=60)
    assert code_of(verify, stamp, now=NOW + 61, validity_seconds=60) == POW_EXPIRED
    assert code_of(verify, stamp, now=NOW - 11, max_future_seconds=10) == POW_EXPIRED


def test_hash_is_checked_before_the_date():
    stamp = craft(bits=30, work=0)
    assert code_of(verify, stamp, now=NOW + 10**6) == POW_INVALID


def test_date_is_checked_before_the_binding():
    stamp = craft(resource="(eve)%(example.com)")
    assert code_of(verify, stamp, now=NOW + 10**6) == POW_EXPIRED


def test_stamp_for_another_recipient_is_a_mismatch():
    stamp = mint("(eve)%(example.com)", 8, HASH, now=NOW)
    assert code_of(verify, stamp) == POW_MISMATCH


def test_stamp_with_uppercase_resource_is_a_mismatch():
    assert code_of(verify, craft(resource="(Bob)%(example.com)")) == POW_MISMATCH


def test_stamp_for_other_content_is_a_mismatch():
    stamp = mint(BOB, 8, OTHER_HASH, now=NOW)
    assert code_of(verify, stamp) == POW_MISMATCH


@pytest.mark.parametrize("ext", ["", "h=" + HASH.upper(), HASH, "h=" + HASH + ";x=1"])
def test_ext_other_than_h_equals_the_message_hash_is_a_mismatch(ext):
    assert code_of(verify, craft(ext=ext)) == POW_MISMATCH


def test_verify_returns_the_parsed_stamp():
    stamp = craft()
    assert verify(stamp) == parse_stamp(stamp)


# --- properties: parse_stamp never fails with anything but a POW code ---------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)
field_text = st.text(alphabet=st.characters(exclude_characters=":"), max_size=20) | st.sampled_from(
    ["1", "0", "8", "007", "-1", "+1", "257", DATE, "260230120000", BOB, "h=" + HASH, RAND]
)


def parse_or_pow_error(obj: object) -> None:
    try:
        stamp = parse_stamp(obj)
    except MMTPError as exc:
        assert exc.code in POW_CODES, exc.code
        assert exc.message
    else:
        assert isinstance(stamp, Stamp)
        assert stamp.token == obj["token"]  # type: ignore[index]
        assert isinstance(stamp.counter, int)
        assert 0 <= stamp.bits <= 256


@given(json_values)
def test_parse_stamp_of_any_value_is_a_stamp_or_a_pow_error(obj):
    parse_or_pow_error(obj)


@given(st.text(max_size=600), json_values | st.integers() | st.integers(min_value=10**4400))
def test_parse_stamp_of_any_token_text_is_a_stamp_or_a_pow_error(token, counter):
    parse_or_pow_error({"token": token, "counter": counter})


@given(st.lists(field_text, min_size=5, max_size=9), st.integers(min_value=-2, max_value=10**6))
def test_parse_stamp_of_near_valid_tokens_is_a_stamp_or_a_pow_error(fields, counter):
    parse_or_pow_error({"token": ":".join(fields), "counter": counter})
    parse_or_pow_error({"token": ":".join([*fields, str(counter)]), "counter": counter})


@given(st.lists(field_text, min_size=7, max_size=7), st.integers(min_value=0, max_value=99))
def test_verify_stamp_of_near_valid_tokens_raises_only_pow_errors(fields, counter):
    fields[6] = str(counter)
    try:
        verify({"token": ":".join(fields), "counter": counter}, difficulty=0)
    except MMTPError as exc:
        assert exc.code in POW_CODES


@given(
    bits=st.integers(min_value=0, max_value=256),
    moment=st.integers(min_value=946_684_800, max_value=4_102_444_799),
    rand=st.text(alphabet="ABCxyz019+/=", min_size=12, max_size=40),
    counter=st.integers(min_value=0, max_value=10**30),
)
def test_well_formed_tokens_parse_to_their_fields(bits, moment, rand, counter):
    token = f"1:{bits}:{format_date(moment)}:{BOB}:h={HASH}:{rand}:{counter}"
    stamp = parse_stamp({"token": token, "counter": counter})
    assert (stamp.bits, stamp.date, stamp.resource, stamp.ext, stamp.rand, stamp.counter) == (
        bits,
        moment,
        BOB,
        "h=" + HASH,
        rand,
        counter,
    )
