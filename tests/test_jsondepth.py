"""SPEC §1 depth limit: the non-recursive depth scan and grammar check agree with `json`."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmtp_proto.jsondepth import MAX_DEPTH, is_json_syntax, nesting_depth, too_deep

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=10),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=6), children, max_size=4),
    ),
    max_leaves=40,
)
json_ish_text = st.lists(
    st.sampled_from(
        [
            *("{", "}", "[", "]", '"', ":", ",", "\\", "\\u00e9", "0", "1", "-", "e", ".", "01"),
            *("true", "nul", "null", '"k"', " ", "\n", "\t", "\x01", "é", "[[", "]]", '{"a":'),
        ]
    ),
    max_size=40,
).map("".join)


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


def _json_accepts(text: str) -> bool:
    try:
        json.loads(text, parse_constant=lambda name: 1 / 0)
    except (ValueError, ZeroDivisionError):
        return False
    return True


@FUZZ
@given(json_values, st.booleans())
def test_depth_of_any_json_value_is_its_nesting(value, ascii_only):
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert nesting_depth(text) == _depth(value)
    assert too_deep(text) == (_depth(value) > MAX_DEPTH)
    assert is_json_syntax(text)


@FUZZ
@given(json_ish_text)
def test_grammar_check_agrees_with_the_json_module(text):
    assert is_json_syntax(text) == _json_accepts(text), text


@FUZZ
@given(json_values, st.integers(min_value=0), st.sampled_from(["", "x", ",", "]", "}", '"', ":"]))
def test_grammar_check_agrees_on_damaged_json(value, pos, junk):
    text = json.dumps(value)
    pos %= len(text) + 1
    damaged = text[:pos] + junk + text[pos + 1 :]
    assert is_json_syntax(damaged) == _json_accepts(damaged), damaged


def test_depth_counts_objects_and_arrays_alike_and_a_scalar_is_zero():
    assert nesting_depth("1") == 0
    assert nesting_depth("{}") == 1
    assert nesting_depth('{"a":[{"b":[]}]}') == 4
    assert nesting_depth('["[[[[", "]]"]') == 1
