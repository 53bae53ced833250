"""SPEC §1: LF-terminated UTF-8 JSON frames, strict JSON and the request envelope."""

from __future__ import annotations

import json
import sys
import time

import pytest

from mmtp_proto.errors import BAD_JSON, BAD_REQUEST, FRAME_TOO_LARGE, MMTPError
from mmtp_proto.framing import (
    DEFAULT_MAX_FRAME_BYTES,
    NO_ID,
    FrameDecoder,
    encode_frame,
    parse_json,
    parse_request,
    peek_id,
    with_id,
)


def feed_all(decoder: FrameDecoder, chunks) -> list[bytes]:
    lines: list[bytes] = []
    for chunk in chunks:
        lines += decoder.feed(chunk)
    return lines


def byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def bad_json(line: bytes) -> MMTPError:
    with pytest.raises(MMTPError) as info:
        parse_json(line)
    assert info.value.code == BAD_JSON
    return info.value


def bad_request(value: object) -> MMTPError:
    with pytest.raises(MMTPError) as info:
        parse_request(value)
    assert info.value.code == BAD_REQUEST
    return info.value


# ---------------------------------------------------------------------------- FrameDecoder: lines


def test_one_complete_line_is_returned_without_its_lf():
    assert FrameDecoder().feed(b'{"action":"CHECK"}\n') == [b'{"action":"CHECK"}']


def test_several_lines_in_one_feed_are_returned_in_order():
    assert FrameDecoder().feed(b"{}\n[1]\n2\n") == [b"{}", b"[1]", b"2"]


def test_unfinished_line_is_held_until_its_lf_arrives():
    decoder = FrameDecoder()
    assert decoder.feed(b'{"a":') == []
    assert decoder.buffered == len(b'{"a":')
    assert decoder.feed(b"1}\n") == [b'{"a":1}']
    assert decoder.buffered == 0


def test_lines_split_across_feeds_byte_by_byte_are_reassembled():
    stream = b'{"action":"A","id":1}\n{"action":"B","data":{"x":"\xc3\xa9"}}\n'
    assert feed_all(FrameDecoder(), byte_by_byte(stream)) == [
        b'{"action":"A","id":1}',
        b'{"action":"B","data":{"x":"\xc3\xa9"}}',
    ]


def test_multibyte_utf8_split_between_feeds_is_reassembled():
    decoder = FrameDecoder()
    assert decoder.feed(b'"\xf0\x9f') == []
    assert decoder.feed(b'\x91\x8b"\n') == [b'"\xf0\x9f\x91\x8b"']


def test_crlf_line_ending_is_tolerated():
    lines = FrameDecoder().feed(b'{"action":"CHECK"}\r\n')
    assert lines == [b'{"action":"CHECK"}\r']
    assert parse_json(lines[0]) == {"action": "CHECK"}


@pytest.mark.parametrize("blank", [b"\n", b"\r\n", b" \n", b"\t\n", b" \t \r \n", b"\n\n\n"])
def test_blank_or_whitespace_only_lines_are_ignored(blank):
    assert FrameDecoder().feed(blank + b"{}\n" + blank) == [b"{}"]


def test_blank_lines_between_frames_split_byte_by_byte_are_ignored():
    stream = b"\r\n{}\n \t\r\n\n[]\n"
    assert feed_all(FrameDecoder(), byte_by_byte(stream)) == [b"{}", b"[]"]


def test_empty_feed_returns_nothing():
    decoder = FrameDecoder()
    assert decoder.feed(b"") == []
    assert not decoder.broken


def test_default_frame_limit_is_one_mebibyte():
    assert DEFAULT_MAX_FRAME_BYTES == 1 << 20
    assert FrameDecoder().max_frame_bytes == DEFAULT_MAX_FRAME_BYTES


# ---------------------------------------------------------------------------- FrameDecoder: limit


def test_frame_exactly_at_limit_is_accepted():
    decoder = FrameDecoder(max_frame_bytes=10)
    assert decoder.feed(b"x" * 10 + b"\n") == [b"x" * 10]
    assert not decoder.broken


def test_frame_exactly_at_limit_fed_byte_by_byte_is_accepted():
    decoder = FrameDecoder(max_frame_bytes=10)
    assert feed_all(decoder, byte_by_byte(b"y" * 10 + b"\n")) == [b"y" * 10]
    assert not decoder.broken


def test_frame_one_byte_over_limit_is_refused():
    decoder = FrameDecoder(max_frame_bytes=10)
    assert decoder.feed(b"x" * 11 + b"\n") == []
    assert decoder.broken


def test_carriage_return_counts_toward_the_limit_as_a_byte_before_the_lf():
    decoder = FrameDecoder(max_frame_bytes=10)
    assert decoder.feed(b"x" * 10 + b"\r\n") == []
    assert decoder.broken


def test_partial_line_over_limit_is_detected_before_the_lf_arrives():
    decoder = FrameDecoder(max_frame_bytes=10)
    assert decoder.feed(b"x" * 11) == []
    assert decoder.broken


def test_partial_line_at_limit_without_lf_is_not_yet_refused():
    decoder = FrameDecoder(max_frame_bytes=10)
    assert decoder.feed(b"x" * 10) == []
    assert not decoder.broken
    assert decoder.buffered == 10


def test_slow_oversized_line_breaks_decoder_as_soon_as_it_passes_the_limit():
    decoder = FrameDecoder(max_frame_bytes=10)
    for _ in range(10):
        decoder.feed(b"x")
        assert not decoder.broken
    decoder.feed(b"x")
    assert decoder.broken
    assert decoder.buffered == 0


def test_frame_over_limit_breaks_decoder_without_buffering_more():
    decoder = FrameDecoder(max_frame_bytes=100)
    decoder.feed(b"x" * 101)
    assert decoder.broken
    assert decoder.buffered == 0
    for _ in range(100):
        assert decoder.feed(b"y" * 1000 + b"\n{}\n") == []
        assert decoder.buffered == 0


def test_lines_before_an_oversized_one_are_still_returned():
    decoder = FrameDecoder(max_frame_bytes=10)
    assert decoder.feed(b"{}\n[1]\n" + b"x" * 11 + b"\n[2]\n") == [b"{}", b"[1]"]
    assert decoder.broken


def test_lines_before_an_oversized_partial_line_are_still_returned():
    decoder = FrameDecoder(max_frame_bytes=10)
    assert decoder.feed(b"{}\n" + b"x" * 50) == [b"{}"]
    assert decoder.broken


def test_lines_after_an_oversized_one_are_never_returned():
    decoder = FrameDecoder(max_frame_bytes=10)
    decoder.feed(b"x" * 11 + b"\n")
    assert decoder.feed(b"{}\n") == []


def test_oversized_line_completed_in_a_later_feed_is_refused():
    decoder = FrameDecoder(max_frame_bytes=10)
    assert decoder.feed(b"x" * 8) == []
    assert decoder.feed(b"xxx\n") == []
    assert decoder.broken


def test_limit_applies_per_line_not_per_feed():
    decoder = FrameDecoder(max_frame_bytes=10)
    stream = b"".join(b"%010d\n" % i for i in range(100))
    assert len(decoder.feed(stream)) == 100
    assert not decoder.broken


def test_decoder_never_holds_more_than_the_limit_between_feeds():
    decoder = FrameDecoder(max_frame_bytes=16)
    for chunk in [b"abc", b"defghijklmnop", b"\nq", b"r" * 15, b"\n", b"s" * 16]:
        decoder.feed(chunk)
        assert decoder.buffered <= 16


def test_oversized_frame_error_is_frame_too_large_naming_the_limit():
    decoder = FrameDecoder(max_frame_bytes=1234)
    err = decoder.error()
    assert isinstance(err, MMTPError)
    assert err.code == FRAME_TOO_LARGE
    assert "1234" in err.message


# ---------------------------------------------------------------------------- parse_json


def test_parse_json_returns_the_parsed_object():
    assert parse_json(b'{"action":"SEND","data":{"x":[1,true,null,"\xc3\xa9"]}}') == {
        "action": "SEND",
        "data": {"x": [1, True, None, "é"]},
    }


def test_parse_json_accepts_surrounding_whitespace_and_cr():
    assert parse_json(b' \t{"a":1} \r') == {"a": 1}


def test_parse_json_accepts_non_object_values_for_parse_request_to_judge():
    assert parse_json(b"[1,2]") == [1, 2]
    assert parse_json(b'"x"') == "x"


@pytest.mark.parametrize(
    "line",
    [
        b"\xff",
        b'{"a":"\xff"}',
        b'{"a":"\xc3"}',  # truncated sequence
        b'"\xc0\xaf"',  # overlong encoding of "/"
        b'"\xed\xa0\x80"',  # a surrogate encoded as UTF-8
        b'"\xf4\x90\x80\x80"',  # beyond U+10FFFF
        '{"a":"é"}'.encode("latin-1"),
        '{"a":1}'.encode("utf-16"),
    ],
)
def test_invalid_utf8_is_bad_json(line):
    bad_json(line)


@pytest.mark.parametrize(
    "line",
    [
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b'{"a":NaN}',
        b'{"a":[1,Infinity]}',
        b'{"a":-Infinity}',
    ],
)
def test_nan_and_infinity_are_bad_json(line):
    bad_json(line)


@pytest.mark.parametrize("line", [b'{"action":"CHECK","id":1e400}', b"-1e400"])
def test_number_overflowing_to_infinity_is_bad_json(line):
    bad_json(line)


@pytest.mark.parametrize(
    "line",
    [
        b'{"a":1,"a":2}',
        b'{"a":1,"a":1}',
        b'{"x":{"b":1,"b":2}}',
        b'[{"c":null,"c":null}]',
        b'{"action":"CHECK","id":1,"id":2}',
    ],
)
def test_duplicate_keys_are_bad_json(line):
    err = bad_json(line)
    assert "duplicate" in err.message


@pytest.mark.parametrize(
    "line",
    [
        b'"\\ud800"',
        b'"\\udfff"',
        b'"a\\udc00b"',
        b'{"\\ud83d":1}',
        b'{"a":["\\ude00\\ud83d"]}',
        b'"\\ud83d\\u0041"',
    ],
)
def test_lone_surrogate_escapes_are_bad_json(line):
    bad_json(line)


def test_escaped_surrogate_pair_is_a_valid_character():
    assert parse_json(b'"\\ud83d\\udc4b"') == "👋"


def too_deep(line: bytes) -> MMTPError:
    with pytest.raises(MMTPError) as info:
        parse_json(line)
    assert info.value.code == BAD_REQUEST
    assert "32" in info.value.message
    return info.value


def test_deeply_nested_lists_are_bad_request_quickly():
    # SPEC §1 rev 2: depth is a declared limit, not the interpreter's recursion limit.
    t0 = time.perf_counter()
    too_deep(b"[" * 100_000 + b"]" * 100_000)
    assert time.perf_counter() - t0 < 2.0  # milliseconds really; generous for a loaded machine


def test_deeply_nested_objects_are_bad_request_quickly():
    t0 = time.perf_counter()
    too_deep(b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
    assert time.perf_counter() - t0 < 2.0  # milliseconds really; generous for a loaded machine


def test_deep_nesting_refused_even_on_a_deep_stack():
    # The TUI's fetch worker parsed with a deeper stack and hit RecursionError at ~982 levels.
    def at_depth(n: int) -> MMTPError:
        if n:
            return at_depth(n - 1)
        return too_deep(b'{"token":' * 982 + b"1" + b"}" * 982)

    at_depth(sys.getrecursionlimit() - 100)


def test_a_syntax_error_in_a_deep_frame_is_bad_json_first():
    bad_json(b"[" * 100_000)
    bad_json(b"[" * 100_000 + b"]" * 99_999 + b"}")
    bad_json(b"[" * 40 + b"1,]" + b"]" * 39)
    bad_json(b'{"a":' * 40 + b"1" + b"}" * 40 + b"x")


@pytest.mark.parametrize(("opener", "closer"), [(b"[", b"]"), (b'{"a":', b"}"), (b'[{"a":', b"}]")])
def test_depth_32_is_accepted_and_33_is_not(opener, closer):
    per_level = 2 if opener == b'[{"a":' else 1
    levels = 32 // per_level
    assert parse_json(opener * levels + b"1" + closer * levels) is not None
    deeper = levels + 1
    too_deep(opener * deeper + b"1" + closer * deeper)


@pytest.mark.parametrize(
    "tail", [b'"' + b'\\"' * 200_000, b'"\\' * 200_000], ids=["escaped-quotes", "quote-backslash"]
)
def test_unterminated_strings_in_a_deep_frame_are_judged_in_linear_time(tail):
    t0 = time.perf_counter()
    bad_json(b"[" * 40 + tail)
    assert time.perf_counter() - t0 < 2.0  # milliseconds really; generous for a loaded machine


def test_brackets_inside_strings_do_not_count():
    text = b'{"a":"' + b"[" * 100 + b'","b":"' + b"{" * 100 + b'\\"[["}'
    assert parse_json(text)["a"] == "[" * 100


def test_moderately_nested_json_is_accepted():
    assert parse_json(b"[" * 32 + b"]" * 32) is not None


def test_huge_integer_is_bad_json():
    bad_json(b'{"n":' + b"9" * 5000 + b"}")


def test_large_but_reasonable_integer_is_accepted():
    assert parse_json(b"123456789012345678901234567890") == 123456789012345678901234567890


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"   ",
        b"{",
        b'{"a":1}}',
        b'{"a":1} {"b":2}',
        b"{'a':1}",
        b'{"a":1,}',
        b"[1,2,]",
        b"{a:1}",
        b'{"a":01}',
        b'{"a":"\x01"}',
        b"undefined",
        b"True",
        b'{"a":"\\x41"}',
        b"//comment\n{}",
    ],
)
def test_malformed_json_is_bad_json(line):
    bad_json(line)


def test_bad_json_message_is_user_readable_not_a_traceback():
    err = bad_json(b"{")
    assert "JSON" in err.message
    assert "Traceback" not in err.message


# ---------------------------------------------------------------------------- parse_request


@pytest.mark.parametrize("value", [[], [{"action": "SEND"}], "SEND", 1, True, None])
def test_request_that_is_not_an_object_is_bad_request(value):
    bad_request(value)


def test_request_without_action_is_bad_request():
    bad_request({"data": {}})


@pytest.mark.parametrize("action", [None, 1, True, ["SEND"], {"name": "SEND"}])
def test_request_with_non_string_action_is_bad_request(action):
    err = bad_request({"action": action})
    assert "action" in err.message


@pytest.mark.parametrize("data", [None, [], "x", 1, True, [{"a": 1}]])
def test_request_with_non_object_data_is_bad_request(data):
    err = bad_request({"action": "CHECK", "data": data})
    assert "data" in err.message


def test_request_without_data_gets_an_empty_object():
    request = parse_request({"action": "CHECK"})
    assert request.action == "CHECK"
    assert request.data == {}


def test_request_data_is_passed_through():
    request = parse_request({"action": "CHECK", "data": {"email": "(a)%(b.c)"}})
    assert request.data == {"email": "(a)%(b.c)"}


def test_request_without_id_has_no_id():
    request = parse_request({"action": "CHECK"})
    assert not request.has_id
    assert request.id is NO_ID


@pytest.mark.parametrize("request_id", [None, 0, "abc", [1, 2], {"k": "v"}, False])
def test_request_id_of_any_json_value_is_kept(request_id):
    request = parse_request({"action": "CHECK", "id": request_id})
    assert request.has_id
    assert request.id == request_id


def test_unknown_action_name_is_not_the_envelope_parsers_concern():
    assert parse_request({"action": "NO_SUCH_THING"}).action == "NO_SUCH_THING"


# ---------------------------------------------------------------------------- ids


def test_peek_id_finds_the_id_of_a_request_that_is_otherwise_malformed():
    assert peek_id({"id": 7, "action": 5}) == 7


def test_peek_id_finds_a_null_id():
    assert peek_id({"id": None}) is None


@pytest.mark.parametrize("value", [{"action": "X"}, [], "id", None, 3])
def test_peek_id_without_an_id_key_is_no_id(value):
    assert peek_id(value) is NO_ID


def test_with_id_echoes_the_id_even_when_null():
    assert with_id({"status": "OK"}, None) == {"status": "OK", "id": None}


def test_with_id_echoes_an_error_response_id():
    response = MMTPError(BAD_REQUEST, "nope").to_response()
    assert with_id(response, "r1")["id"] == "r1"


def test_with_id_adds_nothing_when_the_request_had_no_id():
    assert with_id({"status": "OK"}, NO_ID) == {"status": "OK"}


# ---------------------------------------------------------------------------- encode_frame


def test_encoded_frame_ends_with_a_single_lf():
    frame = encode_frame({"status": "OK"})
    assert frame.endswith(b"\n")
    assert frame.count(b"\n") == 1


def test_encoded_frame_escapes_newlines_inside_strings():
    frame = encode_frame({"message": "line one\nline two\r\n"})
    assert frame.count(b"\n") == 1
    assert parse_json(frame[:-1]) == {"message": "line one\nline two\r\n"}


def test_encoded_frame_is_utf8_without_ascii_escapes():
    frame = encode_frame({"message": "héllo 👋"})
    assert "héllo 👋".encode() in frame


def test_encoded_frame_is_compact_json():
    assert encode_frame({"a": [1, 2], "b": None}) == b'{"a":[1,2],"b":null}\n'


def test_encode_frame_refuses_nan():
    with pytest.raises(ValueError):
        encode_frame({"x": float("nan")})


def test_encoded_frames_survive_a_byte_by_byte_decoder_and_strict_parse():
    values = [
        {"status": "OK", "id": 1},
        {"status": "ERROR", "error": {"code": "BAD_JSON", "message": "x\ny"}, "message": "x\ny"},
        {"status": "OK", "messages": [{"subject": "Grüße"}]},
    ]
    stream = b"".join(encode_frame(v) for v in values)
    lines = feed_all(FrameDecoder(), byte_by_byte(stream))
    assert [parse_json(line) for line in lines] == values


def test_error_response_shape_matches_the_spec():
    frame = encode_frame(with_id(MMTPError(BAD_JSON, "bad bytes").to_response(), 5))
    assert json.loads(frame) == {
        "status": "ERROR",
        "error": {"code": "BAD_JSON", "message": "bad bytes"},
        "message": "bad bytes",
        "id": 5,
    }
