"""Canonical JSON and the bytes that are hashed or signed (SPEC preamble, §3, §5)."""

from __future__ import annotations

import hashlib
import json

import pytest

from mmtp_proto.canonical import auth_challenge, canonical_json, message_hash

# A fixed content object with nested keys out of order, non-ASCII text, an emoji outside the
# BMP, characters JSON must escape, and an attachment.
CONTENT = {
    "subject": "Grüße 👋",
    "body": 'Hello\nworld "quoted"',
    "attachments": [
        {
            "size": 2,
            "filename": "a.txt",
            "sha256": "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4",
            "data": "aGk=",
            "contentType": "text/plain",
        }
    ],
}

# Written out by hand from the SPEC's definition, not produced by the code under test.
CONTENT_CANONICAL = (
    '{"attachments":[{"contentType":"text/plain","data":"aGk=","filename":"a.txt",'
    '"sha256":"8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4","size":2}],'
    '"body":"Hello\\nworld \\"quoted\\"","subject":"Grüße 👋"}'
).encode()
CONTENT_HASH = "0c34792c32561514cb2baec6e245d6b9c989165c38b27e9152ff8354a4af79bf"


def spec_canonical(value: object) -> bytes:
    """The SPEC's definition of canonical JSON, verbatim."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


# ---------------------------------------------------------------------------- canonical_json


def test_canonical_json_of_fixed_content_is_exactly_the_spec_bytes():
    assert canonical_json(CONTENT) == CONTENT_CANONICAL


def test_canonical_json_matches_the_spec_definition():
    assert canonical_json(CONTENT) == spec_canonical(CONTENT)


def test_canonical_json_sorts_keys():
    assert canonical_json({"b": 1, "a": 2, "c": 3}) == b'{"a":2,"b":1,"c":3}'


def test_canonical_json_sorts_nested_keys():
    value = {"z": {"y": 1, "x": [{"q": 1, "p": 2}]}, "a": None}
    assert canonical_json(value) == b'{"a":null,"z":{"x":[{"p":2,"q":1}],"y":1}}'


def test_canonical_json_sorts_keys_by_code_point():
    assert canonical_json({"b": 1, "B": 2, "é": 3, "_": 4}) == '{"B":2,"_":4,"b":1,"é":3}'.encode()


def test_canonical_json_keeps_list_order():
    assert canonical_json([3, 1, 2]) == b"[3,1,2]"


def test_canonical_json_uses_no_spaces():
    assert canonical_json({"a": [1, 2], "b": {"c": "d e"}}) == b'{"a":[1,2],"b":{"c":"d e"}}'


def test_canonical_json_does_not_depend_on_key_insertion_order():
    one = {"subject": "s", "body": "b"}
    two = {"body": "b", "subject": "s"}
    assert canonical_json(one) == canonical_json(two)


def test_canonical_json_keeps_non_ascii_as_utf8():
    assert canonical_json({"s": "é"}) == b'{"s":"\xc3\xa9"}'


def test_canonical_json_keeps_astral_characters_as_four_byte_utf8():
    assert canonical_json("👋") == b'"\xf0\x9f\x91\x8b"'


def test_canonical_json_escapes_control_characters_and_quotes():
    assert canonical_json('a\n"\\\x01') == b'"a\\n\\"\\\\\\u0001"'


def test_canonical_json_encodes_integers_booleans_and_null():
    assert canonical_json([0, -1, 10**30, True, False, None]) == (
        b"[0,-1,1000000000000000000000000000000,true,false,null]"
    )


def test_canonical_json_encodes_empty_containers():
    assert canonical_json({"a": [], "b": {}, "c": ""}) == b'{"a":[],"b":{},"c":""}'


def test_canonical_json_returns_bytes():
    assert isinstance(canonical_json({}), bytes)


@pytest.mark.parametrize(
    "value",
    [
        1.0,
        0.5,
        float("nan"),
        float("inf"),
        [1, 2.5],
        {"a": 1.0},
        {"a": {"b": [{"c": 0.0}]}},
        [[[[-0.0]]]],
    ],
)
def test_canonical_json_refuses_floats_anywhere(value):
    with pytest.raises(ValueError):
        canonical_json(value)


def test_canonical_json_refuses_a_float_inside_a_tuple():
    with pytest.raises(ValueError):
        canonical_json({"a": (1.5,)})


# ---------------------------------------------------------------------------- message_hash


def test_message_hash_of_fixed_content_is_the_known_answer():
    assert message_hash(CONTENT) == CONTENT_HASH


def test_message_hash_is_sha256_of_the_spec_canonical_json():
    expected = hashlib.sha256(
        json.dumps(CONTENT, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8"
        )
    ).hexdigest()
    assert message_hash(CONTENT) == expected


def test_message_hash_of_hand_written_bytes_is_the_known_answer():
    assert hashlib.sha256(CONTENT_CANONICAL).hexdigest() == CONTENT_HASH


def test_message_hash_is_64_lowercase_hex_characters():
    digest = message_hash({"subject": "", "body": ""})
    assert len(digest) == 64
    assert digest == digest.lower()
    int(digest, 16)


def test_message_hash_does_not_depend_on_key_order():
    reordered = dict(reversed(list(CONTENT.items())))
    assert message_hash(reordered) == CONTENT_HASH


def test_message_hash_changes_when_content_changes():
    changed = {**CONTENT, "subject": "Grüße 👋!"}
    assert message_hash(changed) != CONTENT_HASH


def test_message_hash_of_encrypted_content_hashes_the_encrypted_object():
    content = {"encrypted": "-----BEGIN PGP MESSAGE-----\n\nabc\n-----END PGP MESSAGE-----\n"}
    expected = hashlib.sha256(
        b'{"encrypted":"-----BEGIN PGP MESSAGE-----\\n\\nabc\\n-----END PGP MESSAGE-----\\n"}'
    ).hexdigest()
    assert message_hash(content) == expected


def test_message_hash_refuses_floats():
    with pytest.raises(ValueError):
        message_hash({"subject": "s", "body": "b", "x": 1.5})


# ---------------------------------------------------------------------------- auth_challenge


def test_auth_challenge_is_the_four_lines_of_the_spec():
    got = auth_challenge("mmtp-server/0.1.0", "00ff" * 8, "(alice)%(example.com)")
    assert got == b"MMTP-AUTH\nmmtp-server/0.1.0\n" + b"00ff" * 8 + b"\n(alice)%(example.com)"


def test_auth_challenge_has_no_trailing_newline():
    assert not auth_challenge("s", "n", "(a)%(b.c)").endswith(b"\n")


def test_auth_challenge_is_utf8():
    assert (
        auth_challenge("sérver/1", "n", "(a)%(b.c)") == "MMTP-AUTH\nsérver/1\nn\n(a)%(b.c)".encode()
    )
