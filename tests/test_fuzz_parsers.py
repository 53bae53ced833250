"""Property tests: every parser either returns a value or raises MMTPError with a SPEC §6 code.

Nothing a peer sends may surface as any other exception (that would be INTERNAL at best and a
dead connection or server at worst), and the frame decoder's memory stays bounded.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import string

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mmtp_proto.address import Address, parse_address
from mmtp_proto.canonical import canonical_json, message_hash
from mmtp_proto.errors import (
    ALL_CODES,
    BAD_JSON,
    BAD_REQUEST,
    HASH_MISMATCH,
    INVALID_ADDRESS,
    MMTPError,
)
from mmtp_proto.framing import (
    FrameDecoder,
    encode_frame,
    parse_json,
    parse_request,
    peek_id,
    with_id,
)
from mmtp_proto.packet import (
    Packet,
    build_packet,
    clear_content,
    make_attachment,
    validate_packet,
)

FUZZ = settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NOW = 1_700_000_000

# ---------------------------------------------------------------------------- strategies

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(max_size=10), children, max_size=5),
    ),
    max_leaves=25,
)
hashable_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.text(max_size=20),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(max_size=10), children, max_size=5),
    ),
    max_leaves=25,
)

# Bytes that look a lot like JSON, so the parser gets past its first character.
json_ish_bytes = st.lists(
    st.sampled_from(
        [
            b"{",
            b"}",
            b"[",
            b"]",
            b'"',
            b":",
            b",",
            b"\\",
            b"\\u",
            b"d800",
            b"dc00",
            b"0",
            b"1",
            b"-",
            b"e",
            b".",
            b"9" * 30,
            b"1e400",
            b"NaN",
            b"Infinity",
            b"true",
            b"null",
            b'"action"',
            b'"data"',
            b'"id"',
            b" ",
            b"\r",
            b"\t",
            b"\xc3\xa9",
            b"\xff",
            b"\xed\xa0\x80",
            b"\xc3",
        ]
    ),
    max_size=40,
).map(b"".join)


def mutate_bytes(data: bytes, pos: int, junk: bytes, cut: bool) -> bytes:
    pos %= len(data) + 1
    return data[:pos] + junk + (data[pos + 1 :] if cut else data[pos:])


def assert_protocol_error(exc: MMTPError, allowed: set[str] | None = None) -> None:
    assert exc.code in ALL_CODES
    if allowed is not None:
        assert exc.code in allowed, (exc.code, exc.message)
    assert isinstance(exc.message, str)
    assert exc.message


# ---------------------------------------------------------------------------- parse_json


@FUZZ
@given(st.binary(max_size=200))
def test_parse_json_of_arbitrary_bytes_returns_or_raises_bad_json(data):
    try:
        parse_json(data)
    except MMTPError as exc:
        assert_protocol_error(exc, {BAD_JSON})


@FUZZ
@given(json_ish_bytes)
def test_parse_json_of_json_like_bytes_returns_or_raises_bad_json(data):
    try:
        parse_json(data)
    except MMTPError as exc:
        assert_protocol_error(exc, {BAD_JSON})


@FUZZ
@given(json_values, st.integers(min_value=0), st.binary(max_size=4), st.booleans())
def test_parse_json_of_damaged_json_returns_or_raises_bad_json(value, pos, junk, cut):
    encoded = json.dumps(value, ensure_ascii=False).encode("utf-8")
    try:
        parse_json(mutate_bytes(encoded, pos, junk, cut))
    except MMTPError as exc:
        assert_protocol_error(exc, {BAD_JSON})


@FUZZ
@given(json_values)
def test_parse_json_reads_back_any_json_value(value):
    assert parse_json(json.dumps(value, ensure_ascii=False).encode("utf-8")) == value
    assert parse_json(json.dumps(value, ensure_ascii=True).encode("ascii")) == value


@FUZZ
@given(st.text(max_size=50))
def test_parse_json_of_arbitrary_text_returns_or_raises_bad_json(text):
    try:
        parse_json(text.encode("utf-8"))
    except MMTPError as exc:
        assert_protocol_error(exc, {BAD_JSON})


@FUZZ
@given(json_ish_bytes)
@example(b'{"action":"CHECK","id":1e400}')
def test_whatever_parse_json_accepts_can_be_echoed_in_a_frame(data):
    try:
        value = parse_json(data)
    except MMTPError:
        return
    request_id = peek_id(value)
    frame = encode_frame(with_id({"status": "OK"}, request_id))
    assert frame.endswith(b"\n")


# ---------------------------------------------------------------------------- parse_request


@FUZZ
@given(json_values)
def test_parse_request_of_any_json_value_returns_or_raises_bad_request(value):
    try:
        request = parse_request(value)
    except MMTPError as exc:
        assert_protocol_error(exc, {BAD_REQUEST})
    else:
        assert isinstance(request.action, str)
        assert isinstance(request.data, dict)


@FUZZ
@given(
    st.fixed_dictionaries(
        {},
        optional={"action": json_values, "data": json_values, "id": json_values, "x": json_values},
    )
)
def test_parse_request_of_envelope_like_objects_returns_or_raises_bad_request(value):
    try:
        request = parse_request(value)
    except MMTPError as exc:
        assert_protocol_error(exc, {BAD_REQUEST})
    else:
        assert request.action == value["action"]
        assert request.data == value.get("data", {})
        assert request.has_id == ("id" in value)


@FUZZ
@given(st.one_of(st.binary(max_size=200), json_ish_bytes))
def test_request_pipeline_of_arbitrary_bytes_raises_only_protocol_errors(data):
    try:
        parse_request(parse_json(data))
    except MMTPError as exc:
        assert_protocol_error(exc, {BAD_JSON, BAD_REQUEST})


# ---------------------------------------------------------------------------- addresses

NAME_CHARS = set(string.ascii_lowercase + string.digits + "._+-")
LABEL_CHARS = set(string.ascii_lowercase + string.digits + "-")


def spec_address(value: str) -> Address | None:
    """SPEC §2 written out independently of the code under test."""
    if not value.isascii():
        return None
    value = value.lower()
    if not (value.startswith("(") and value.endswith(")")):
        return None
    parts = value[1:-1].split(")%(")
    if len(parts) != 2:
        return None
    name, domain = parts
    if not 1 <= len(name) <= 64 or not set(name) <= NAME_CHARS:
        return None
    if name.startswith(".") or name.endswith(".") or ".." in name:
        return None
    if domain != "localhost":
        if len(domain) > 253 or "." not in domain:
            return None
        for label in domain.split("."):
            if not 1 <= len(label) <= 63 or not set(label) <= LABEL_CHARS:
                return None
            if label.startswith("-") or label.endswith("-"):
                return None
    return Address(name, domain)


name_texts = st.one_of(
    st.text(alphabet="abZ09._+-%()@ é\u212a", max_size=70),
    st.integers(min_value=60, max_value=70).map(lambda n: "n" * n),
)
label_texts = st.one_of(
    st.text(alphabet="abZ09-_é", max_size=8),
    st.integers(min_value=60, max_value=66).map(lambda n: "l" * n),
)
domain_texts = st.one_of(
    st.lists(label_texts, min_size=1, max_size=6).map(".".join),
    st.lists(st.just("d" * 63), min_size=3, max_size=5).map(".".join),
    st.sampled_from(["localhost", "LocalHost", "localhost.", "example.com", "example.com."]),
)
address_like = st.one_of(
    st.builds(lambda n, d: f"({n})%({d})", name_texts, domain_texts),
    st.text(max_size=80),
    st.text(alphabet="()%.aZ-", max_size=20),
)


@FUZZ
@given(address_like)
def test_parse_address_agrees_with_the_spec_rules(value):
    expected = spec_address(value)
    try:
        got = parse_address(value)
    except MMTPError as exc:
        assert_protocol_error(exc, {INVALID_ADDRESS})
        assert expected is None, f"{value!r} is valid by SPEC §2 but was refused"
    else:
        assert got == expected
        assert str(got) == str(got).lower()
        assert parse_address(str(got)) == got


@FUZZ
@given(json_values)
def test_parse_address_of_any_json_value_returns_or_raises_invalid_address(value):
    try:
        parse_address(value)
    except MMTPError as exc:
        assert_protocol_error(exc, {INVALID_ADDRESS})


# ---------------------------------------------------------------------------- packets

MSG_ID = "0123456789abcdef0123456789abcdef"
ARMORED_MESSAGE = "-----BEGIN PGP MESSAGE-----\n\nabc\n-----END PGP MESSAGE-----\n"
ARMORED_SIGNATURE = "-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n"


def base_packets() -> list[dict]:
    plain = build_packet(
        sender="(alice)%(example.org)",
        recipient="(bob)%(localhost)",
        content=clear_content("hi", "body"),
        message_id=MSG_ID,
        timestamp=NOW,
    )
    rich = build_packet(
        sender="(Alice)%(Example.org)",
        recipient="(bob)%(example.com)",
        content=clear_content("Grüße", "x\ny", [make_attachment("a.txt", b"abc", "text/plain")]),
        type="REPLY",
        message_id=MSG_ID,
        timestamp=NOW - 5,
        in_reply_to="f" * 32,
        references=["e" * 32, "f" * 32],
    )
    rich["meta"]["hashcashToken"] = {"token": "1:20:231114221320:x::abcdefabcdef:1", "counter": 1}
    rich["verification"]["signature"] = ARMORED_SIGNATURE
    sealed = build_packet(
        sender="(carol)%(example.net)",
        recipient="(bob)%(example.com)",
        content={"encrypted": ARMORED_MESSAGE},
        type="FORWARD",
        message_id=MSG_ID,
        timestamp=NOW + 3600,
    )
    return [plain, rich, sealed]


def positions(value: object, path: tuple = ()) -> list[tuple]:
    """Every (path to container, key) inside a packet, containers included."""
    found: list[tuple] = []
    if isinstance(value, dict):
        for key, child in value.items():
            found.append((path, key))
            found += positions(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.append((path, index))
            found += positions(child, (*path, index))
    return found


def container_at(packet: dict, path: tuple) -> object:
    node: object = packet
    for key in path:
        node = node[key]  # type: ignore[index]
    return node


@st.composite
def mutated_packets(draw) -> dict:
    packet = copy.deepcopy(draw(st.sampled_from(base_packets())))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        spots = positions(packet)
        path, key = draw(st.sampled_from(spots))
        node = container_at(packet, path)
        action = draw(st.sampled_from(["drop", "replace", "add"]))
        if action == "drop" and isinstance(node, dict):
            del node[key]
        elif action == "add" and isinstance(node, dict):
            node[draw(st.text(max_size=12))] = draw(json_values)
        else:
            node[key] = draw(json_values)  # type: ignore[index]
    if draw(st.booleans()) and isinstance(packet.get("verification"), dict):
        # Keep the hash right so the mutation is judged on its own.
        with contextlib.suppress(KeyError, TypeError, ValueError):
            packet["verification"]["messageHash"] = message_hash(packet["content"])
    return packet


PACKET_CODES = {BAD_REQUEST, INVALID_ADDRESS, HASH_MISMATCH}


def check_packet(packet: object) -> Packet | None:
    try:
        result = validate_packet(packet, now=NOW)
    except MMTPError as exc:
        assert_protocol_error(exc, PACKET_CODES)
        return None
    assert result.raw["verification"]["messageHash"] == message_hash(result.raw["content"])
    assert result.raw["meta"]["signed"] is (result.signature is not None)
    canonical_json(result.raw["content"])
    again = validate_packet(copy.deepcopy(result.raw), now=NOW)
    assert again.raw == result.raw
    return result


@FUZZ
@given(json_values)
def test_validate_packet_of_any_json_value_returns_or_raises_a_protocol_error(value):
    check_packet(value)


@FUZZ
@given(mutated_packets())
def test_validate_packet_of_mutated_packets_returns_or_raises_a_protocol_error(packet):
    check_packet(packet)


@FUZZ
@given(st.sampled_from(["meta", "sender", "recipient", "content", "verification"]), json_values)
def test_validate_packet_with_a_top_level_field_replaced_never_crashes(key, value):
    for packet in base_packets():
        packet[key] = value
        check_packet(packet)


def test_unmutated_base_packets_are_valid():
    for packet in base_packets():
        assert check_packet(packet) is not None


# ---------------------------------------------------------------------------- frame decoder

stream_bytes = st.lists(
    st.sampled_from([b"\n", b"\r", b" ", b"\t", b"x", b"{}", b"\xff", b"yyyyyyy"]), max_size=60
).map(b"".join)


def spec_lines(stream: bytes, limit: int) -> tuple[list[bytes], bool]:
    """SPEC §1 written out: non-blank lines up to the first one over the limit."""
    *complete, partial = stream.split(b"\n")
    lines: list[bytes] = []
    for line in complete:
        if len(line) > limit:
            return lines, True
        if line.strip(b" \t\r"):
            lines.append(line)
    return lines, len(partial) > limit


def chunked(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    bounds = [0, *points, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


@FUZZ
@given(stream_bytes, st.lists(st.integers(min_value=0), max_size=20), st.integers(1, 12))
def test_frame_decoder_under_any_chunking_returns_the_spec_lines(stream, cuts, limit):
    decoder = FrameDecoder(max_frame_bytes=limit)
    got: list[bytes] = []
    for chunk in chunked(stream, cuts):
        was_broken = decoder.broken
        lines = decoder.feed(chunk)
        if was_broken:
            assert lines == []
        got += lines
        assert decoder.buffered <= limit
        for line in lines:
            assert b"\n" not in line
            assert len(line) <= limit
            assert line.strip(b" \t\r")
    expected, broken = spec_lines(stream, limit)
    assert got == expected
    assert decoder.broken == broken


@FUZZ
@given(st.lists(st.binary(max_size=300), max_size=20), st.integers(1, 256))
def test_frame_decoder_never_holds_more_than_the_limit_plus_the_last_chunk(chunks, limit):
    decoder = FrameDecoder(max_frame_bytes=limit)
    for chunk in chunks:
        before = decoder.buffered
        lines = decoder.feed(chunk)
        assert decoder.buffered <= limit
        assert decoder.buffered <= before + len(chunk)
        for line in lines:
            assert len(line) <= limit
            try:
                parse_request(parse_json(line))
            except MMTPError as exc:
                assert_protocol_error(exc, {BAD_JSON, BAD_REQUEST})
    if decoder.broken:
        assert decoder.buffered == 0
        assert decoder.error().code in ALL_CODES


@FUZZ
@given(st.lists(st.dictionaries(st.text(max_size=8), json_values, max_size=4), max_size=5))
def test_encoded_frames_decode_back_to_the_same_values_byte_by_byte(values):
    stream = b"".join(encode_frame(v) for v in values)
    decoder = FrameDecoder()
    lines: list[bytes] = []
    for i in range(len(stream)):
        lines += decoder.feed(stream[i : i + 1])
    assert [parse_json(line) for line in lines] == values


# ---------------------------------------------------------------------------- canonical JSON


@FUZZ
@given(hashable_values)
def test_canonical_json_is_the_spec_encoding_and_reads_back(value):
    encoded = canonical_json(value)
    assert encoded == json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
    assert parse_json(encoded) == value


@FUZZ
@given(st.dictionaries(st.text(max_size=8), hashable_values, max_size=6), st.randoms())
def test_canonical_json_does_not_depend_on_key_order(value, rnd):
    items = list(value.items())
    rnd.shuffle(items)
    assert canonical_json(dict(items)) == canonical_json(value)
