"""SPEC §3: every rule of the message packet, checked by validate_packet."""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib

import pytest

from mmtp_proto.canonical import canonical_json, message_hash
from mmtp_proto.errors import BAD_REQUEST, HASH_MISMATCH, INVALID_ADDRESS, MMTPError
from mmtp_proto.packet import (
    NOTIFY_EVENTS,
    Packet,
    build_packet,
    clear_content,
    make_attachment,
    signature_input_of,
    validate_clear_content,
    validate_packet,
)

NOW = 1_700_000_000
MESSAGE_ID = "0123456789abcdef0123456789abcdef"
OTHER_ID = "fedcba9876543210fedcba9876543210"
SENDER = "(alice)%(example.org)"
RECIPIENT = "(bob)%(example.com)"
ARMORED_MESSAGE = "-----BEGIN PGP MESSAGE-----\n\nwcBMA0xyz\n=abcd\n-----END PGP MESSAGE-----\n"
ARMORED_SIGNATURE = (
    "-----BEGIN PGP SIGNATURE-----\n\nwsBcBAAB\n=abcd\n-----END PGP SIGNATURE-----\n"
)


def make_packet(content: dict | None = None, **overrides) -> dict:
    values = dict(
        sender=SENDER,
        recipient=RECIPIENT,
        content=content if content is not None else clear_content("Hello", "How are you?"),
        message_id=MESSAGE_ID,
        timestamp=NOW,
    )
    values.update(overrides)
    return build_packet(**values)


def rehash(packet: dict) -> dict:
    # A float in the content cannot be hashed; validation refuses it before hashing anyway.
    with contextlib.suppress(ValueError):
        packet["verification"]["messageHash"] = message_hash(packet["content"])
    return packet


def with_content(content: object) -> dict:
    packet = make_packet()
    packet["content"] = content
    if isinstance(content, dict):
        rehash(packet)
    return packet


def refused(packet: object, field: str, code: str = BAD_REQUEST) -> MMTPError:
    with pytest.raises(MMTPError) as info:
        validate_packet(packet, now=NOW)
    assert info.value.code == code, info.value.message
    assert field in info.value.message, info.value.message
    return info.value


def accepted(packet: object) -> Packet:
    return validate_packet(packet, now=NOW)


# ---------------------------------------------------------------------------- the whole packet


def test_valid_clear_packet_is_accepted():
    result = accepted(make_packet())
    assert result.type == "SEND"
    assert result.message_id == MESSAGE_ID
    assert result.timestamp == NOW
    assert result.sender == SENDER
    assert result.recipient == RECIPIENT
    assert result.encrypted is False
    assert result.signature is None
    assert result.message_hash == message_hash(clear_content("Hello", "How are you?"))


def test_normalized_packet_keeps_exactly_the_spec_fields():
    raw = accepted(make_packet()).raw
    assert set(raw) == {"meta", "sender", "recipient", "content", "verification"}
    assert set(raw["verification"]) == {"messageHash", "signature"}
    assert raw["content"] == {"subject": "Hello", "body": "How are you?"}


def test_validation_does_not_modify_the_input_packet():
    packet = make_packet()
    packet["sender"] = "(ALICE)%(EXAMPLE.ORG)"
    before = copy.deepcopy(packet)
    accepted(packet)
    assert packet == before


def test_packet_that_is_not_an_object_is_bad_request():
    for value in (None, [], "packet", 1):
        refused(value, "packet")


def test_unknown_top_level_field_is_bad_request():
    packet = make_packet()
    packet["extra"] = 1
    refused(packet, "extra")


@pytest.mark.parametrize("key", ["meta", "sender", "recipient", "content", "verification"])
def test_missing_top_level_field_is_bad_request_naming_it(key):
    packet = make_packet()
    del packet[key]
    refused(packet, key)


# ---------------------------------------------------------------------------- addresses


def test_addresses_are_lowercased_in_the_normalized_packet():
    packet = make_packet()
    packet["sender"] = "(Alice)%(Example.ORG)"
    packet["recipient"] = "(BOB)%(EXAMPLE.COM)"
    result = accepted(packet)
    assert result.sender == SENDER
    assert result.recipient == RECIPIENT
    assert result.raw["sender"] == SENDER
    assert result.raw["recipient"] == RECIPIENT


def test_build_packet_lowercases_addresses():
    packet = make_packet(sender="(ALICE)%(example.ORG)", recipient="(Bob)%(Example.com)")
    assert packet["sender"] == SENDER
    assert packet["recipient"] == RECIPIENT


@pytest.mark.parametrize("field", ["sender", "recipient"])
@pytest.mark.parametrize("value", ["alice@example.org", "(a..b)%(example.org)", "(a)%(b)", ""])
def test_invalid_address_is_invalid_address_naming_the_field(field, value):
    packet = make_packet()
    packet[field] = value
    refused(packet, field, INVALID_ADDRESS)


@pytest.mark.parametrize("field", ["sender", "recipient"])
@pytest.mark.parametrize("value", [None, 1, True, ["(a)%(b.c)"], {"name": "a"}])
def test_non_string_address_is_bad_request_naming_the_field(field, value):
    # SPEC §3: an ill-typed field is BAD_REQUEST (issue 11 item 13; it was INVALID_ADDRESS).
    packet = make_packet()
    packet[field] = value
    refused(packet, field, BAD_REQUEST)


# ---------------------------------------------------------------------------- meta


def test_meta_that_is_not_an_object_is_bad_request():
    packet = make_packet()
    packet["meta"] = ["SEND"]
    refused(packet, "meta")


def test_unknown_meta_field_is_bad_request():
    packet = make_packet()
    packet["meta"]["priority"] = "high"
    refused(packet, "priority")


@pytest.mark.parametrize("kind", ["SEND", "REPLY", "FORWARD"])
def test_each_message_type_is_accepted(kind):
    assert accepted(make_packet(type=kind)).type == kind


@pytest.mark.parametrize("kind", ["send", "Reply", "BOUNCE", "", None, 1, ["SEND"], {"t": 1}])
def test_unknown_meta_type_is_bad_request(kind):
    packet = make_packet()
    packet["meta"]["type"] = kind
    refused(packet, "meta.type")


def test_missing_meta_type_is_bad_request():
    packet = make_packet()
    del packet["meta"]["type"]
    refused(packet, "meta.type")


def test_build_packet_refuses_an_unknown_type():
    with pytest.raises(ValueError):
        make_packet(type="BOUNCE")


@pytest.mark.parametrize(
    "message_id",
    [
        "0123456789ABCDEF0123456789ABCDEF",
        "0123456789abcdef0123456789abcde",
        "0123456789abcdef0123456789abcdef0",
        "0123456789abcdef0123456789abcdeg",
        "0123456789abcdef-123456789abcdef",
        " 0123456789abcdef0123456789abcde",
        "0123456789abcdef0123456789abcdef\n",
        "",
        None,
        12345678901234567890123456789012,
        ["0123456789abcdef0123456789abcdef"],
    ],
)
def test_malformed_message_id_is_bad_request(message_id):
    packet = make_packet()
    packet["meta"]["messageId"] = message_id
    refused(packet, "meta.messageId")


def test_missing_message_id_is_bad_request():
    packet = make_packet()
    del packet["meta"]["messageId"]
    refused(packet, "meta.messageId")


def test_build_packet_chooses_a_random_message_id_of_32_lowercase_hex():
    one = build_packet(sender=SENDER, recipient=RECIPIENT, content=clear_content("s", "b"))
    two = build_packet(sender=SENDER, recipient=RECIPIENT, content=clear_content("s", "b"))
    assert one["meta"]["messageId"] != two["meta"]["messageId"]
    for packet in (one, two):
        assert validate_packet(packet).message_id == packet["meta"]["messageId"]


# ---------------------------------------------------------------------------- timestamp


def test_timestamp_now_is_accepted():
    assert accepted(make_packet(timestamp=NOW)).timestamp == NOW


def test_timestamp_in_the_past_within_the_stamp_validity_plus_an_hour_is_accepted():
    oldest = NOW - 2 * 86400 - 3600
    assert accepted(make_packet(timestamp=oldest)).timestamp == oldest


def test_timestamp_older_than_the_stamp_validity_plus_an_hour_is_bad_request():
    # SPEC §3 rev 2: an old signed packet cannot be re-injected under a fresh stamp.
    refused(make_packet(timestamp=NOW - 2 * 86400 - 3601), "meta.timestamp")
    refused(make_packet(timestamp=NOW - 10 * 365 * 86400), "meta.timestamp")
    refused(make_packet(timestamp=0), "meta.timestamp")


def test_timestamp_age_follows_the_servers_stamp_validity():
    packet = make_packet(timestamp=NOW - 600 - 3600)
    assert validate_packet(packet, now=NOW, stamp_validity_seconds=600).timestamp < NOW
    with pytest.raises(MMTPError) as info:
        validate_packet(packet, now=NOW, stamp_validity_seconds=599)
    assert info.value.code == BAD_REQUEST and "meta.timestamp" in info.value.message


def test_timestamp_exactly_one_hour_in_the_future_is_accepted():
    assert accepted(make_packet(timestamp=NOW + 3600)).timestamp == NOW + 3600


def test_timestamp_more_than_one_hour_in_the_future_is_bad_request():
    refused(make_packet(timestamp=NOW + 3601), "meta.timestamp")


def test_timestamp_far_in_the_future_is_bad_request():
    refused(make_packet(timestamp=10**20), "meta.timestamp")


def test_negative_timestamp_is_bad_request():
    refused(make_packet(timestamp=-1), "meta.timestamp")


@pytest.mark.parametrize("value", [True, False, 1700000000.0, "1700000000", None, [NOW], {}])
def test_timestamp_that_is_not_an_integer_is_bad_request(value):
    packet = make_packet()
    packet["meta"]["timestamp"] = value
    refused(packet, "meta.timestamp")


def test_missing_timestamp_is_bad_request():
    packet = make_packet()
    del packet["meta"]["timestamp"]
    refused(packet, "meta.timestamp")


def test_timestamp_check_uses_the_current_time_by_default():
    import time

    refused_now = make_packet(timestamp=int(time.time()) + 7200)
    with pytest.raises(MMTPError) as info:
        validate_packet(refused_now)
    assert info.value.code == BAD_REQUEST


# ---------------------------------------------------------------------------- flags


@pytest.mark.parametrize("key", ["encrypted", "signed", "signatureVerified"])
@pytest.mark.parametrize("value", [1, 0, "true", [], {}])
def test_meta_flag_that_is_not_a_boolean_is_bad_request(key, value):
    packet = make_packet()
    packet["meta"][key] = value
    refused(packet, f"meta.{key}")


@pytest.mark.parametrize("key", ["encrypted", "signed", "signatureVerified", "hashcashToken"])
def test_optional_meta_fields_may_be_absent(key):
    packet = make_packet()
    del packet["meta"][key]
    accepted(packet)


@pytest.mark.parametrize("key", ["encrypted", "signed", "signatureVerified"])
def test_meta_flag_may_be_null(key):
    packet = make_packet()
    packet["meta"][key] = None
    accepted(packet)


def test_meta_encrypted_disagreeing_with_clear_content_is_bad_request():
    packet = make_packet()
    packet["meta"]["encrypted"] = True
    refused(packet, "meta.encrypted")


def test_meta_encrypted_disagreeing_with_encrypted_content_is_bad_request():
    packet = make_packet({"encrypted": ARMORED_MESSAGE})
    packet["meta"]["encrypted"] = False
    refused(packet, "meta.encrypted")


def test_meta_signed_is_set_by_the_server_not_the_client():
    packet = make_packet()
    packet["meta"]["signed"] = True
    assert accepted(packet).raw["meta"]["signed"] is False


def test_meta_encrypted_absent_is_derived_from_the_content_but_not_filled_in():
    # SPEC §3 rev 2: meta.encrypted is signed, so the server never adds it to the packet.
    packet = make_packet({"encrypted": ARMORED_MESSAGE})
    del packet["meta"]["encrypted"]
    result = accepted(packet)
    assert result.encrypted is True
    assert "encrypted" not in result.raw["meta"]


def test_received_at_sent_by_the_client_is_dropped():
    packet = make_packet()
    packet["meta"]["receivedAt"] = 5
    assert "receivedAt" not in accepted(packet).raw["meta"]


def test_hashcash_token_is_passed_on_for_the_stamp_checker():
    packet = make_packet()
    packet["meta"]["hashcashToken"] = {"token": "1:20:x", "counter": 1}
    assert accepted(packet).stamp == {"token": "1:20:x", "counter": 1}


# ---------------------------------------------------------------------------- threading


def test_in_reply_to_a_message_id_is_accepted():
    packet = make_packet(type="REPLY", in_reply_to=OTHER_ID)
    assert accepted(packet).raw["meta"]["inReplyTo"] == OTHER_ID


def test_in_reply_to_null_is_accepted():
    packet = make_packet()
    packet["meta"]["inReplyTo"] = None
    accepted(packet)


@pytest.mark.parametrize("value", ["", "abc", OTHER_ID.upper(), 1, [OTHER_ID], True])
def test_in_reply_to_that_is_not_a_message_id_is_bad_request(value):
    packet = make_packet()
    packet["meta"]["inReplyTo"] = value
    refused(packet, "meta.inReplyTo")


def test_references_list_of_message_ids_is_accepted():
    packet = make_packet(references=[OTHER_ID, MESSAGE_ID])
    assert accepted(packet).raw["meta"]["references"] == [OTHER_ID, MESSAGE_ID]


def test_empty_references_list_is_accepted():
    packet = make_packet()
    packet["meta"]["references"] = []
    accepted(packet)


def test_references_null_is_accepted():
    packet = make_packet()
    packet["meta"]["references"] = None
    accepted(packet)


@pytest.mark.parametrize(
    "value", [OTHER_ID, {"0": OTHER_ID}, [OTHER_ID, "nope"], [None], [1], [[OTHER_ID]], True]
)
def test_references_that_are_not_a_list_of_message_ids_are_bad_request(value):
    packet = make_packet()
    packet["meta"]["references"] = value
    refused(packet, "meta.references")


def test_one_hundred_references_are_accepted():
    packet = make_packet()
    packet["meta"]["references"] = [f"{i:032x}" for i in range(100)]
    accepted(packet)


def test_more_than_one_hundred_references_are_bad_request():
    packet = make_packet()
    packet["meta"]["references"] = [f"{i:032x}" for i in range(101)]
    refused(packet, "meta.references")


# ---------------------------------------------------------------------------- clear content


def test_content_that_is_not_an_object_is_bad_request():
    for value in (None, "text", ["subject"], 1):
        refused(with_content(value), "content")


@pytest.mark.parametrize("key", ["subject", "body"])
def test_clear_content_missing_subject_or_body_is_bad_request(key):
    content = {"subject": "s", "body": "b"}
    del content[key]
    refused(with_content(content), f"content.{key}")


@pytest.mark.parametrize("key", ["subject", "body"])
@pytest.mark.parametrize("value", [None, 1, ["s"], {"s": 1}, True])
def test_clear_content_subject_or_body_not_a_string_is_bad_request(key, value):
    content = {"subject": "s", "body": "b", key: value}
    refused(with_content(content), f"content.{key}")


def test_clear_content_with_unknown_field_is_bad_request():
    refused(with_content({"subject": "s", "body": "b", "html": "<p>"}), "html")


def test_clear_content_may_have_empty_subject_and_body():
    accepted(with_content({"subject": "", "body": ""}))


def test_clear_content_keeps_non_ascii_text():
    result = accepted(make_packet(clear_content("Grüße 👋", "日本語\nline two")))
    assert result.raw["content"]["subject"] == "Grüße 👋"


def test_subject_of_998_characters_is_accepted():
    accepted(make_packet(clear_content("s" * 998, "")))


def test_subject_longer_than_998_characters_is_bad_request():
    refused(make_packet(clear_content("s" * 999, "")), "content.subject")


def test_clear_content_helper_omits_empty_attachments():
    assert clear_content("s", "b") == {"subject": "s", "body": "b"}
    assert clear_content("s", "b", []) == {"subject": "s", "body": "b"}


def test_validate_clear_content_accepts_decrypted_content():
    content = clear_content("s", "b", [make_attachment("a.txt", b"hi", "text/plain")])
    assert validate_clear_content(content) is content


def test_validate_clear_content_names_the_given_field():
    with pytest.raises(MMTPError) as info:
        validate_clear_content({"subject": 1, "body": ""}, "decrypted")
    assert info.value.code == BAD_REQUEST
    assert "decrypted.subject" in info.value.message


# ---------------------------------------------------------------------------- encrypted content


def test_encrypted_content_is_accepted_and_flagged():
    result = accepted(make_packet({"encrypted": ARMORED_MESSAGE}))
    assert result.encrypted is True
    assert result.raw["meta"]["encrypted"] is True
    assert result.message_hash == message_hash({"encrypted": ARMORED_MESSAGE})


def test_encrypted_content_with_leading_whitespace_is_accepted():
    accepted(make_packet({"encrypted": "\n  " + ARMORED_MESSAGE}))


def test_encrypted_content_with_a_clear_subject_beside_it_is_bad_request():
    refused(with_content({"encrypted": ARMORED_MESSAGE, "subject": "leak"}), "subject")


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "hello",
        "-----BEGIN PGP SIGNATURE-----\n",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n",
        1,
        [ARMORED_MESSAGE],
        {"armor": ARMORED_MESSAGE},
    ],
)
def test_encrypted_content_that_is_not_an_armored_pgp_message_is_bad_request(value):
    refused(with_content({"encrypted": value}), "content.encrypted")


# ---------------------------------------------------------------------------- attachments


def attachment(**overrides) -> dict:
    att = make_attachment("notes.txt", b"hello world", "text/plain")
    att.update(overrides)
    return att


def with_attachments(*atts: object) -> dict:
    return with_content({"subject": "s", "body": "b", "attachments": list(atts)})


def test_make_attachment_describes_the_data():
    att = make_attachment("a.bin", b"\x00\x01\x02")
    assert att == {
        "filename": "a.bin",
        "contentType": "application/octet-stream",
        "size": 3,
        "sha256": hashlib.sha256(b"\x00\x01\x02").hexdigest(),
        "data": base64.b64encode(b"\x00\x01\x02").decode(),
    }


def test_valid_attachment_is_accepted():
    accepted(with_attachments(attachment()))


def test_empty_attachment_is_accepted():
    accepted(with_attachments(make_attachment("empty", b"")))


def test_empty_attachment_list_is_accepted():
    accepted(with_attachments())


def test_one_hundred_attachments_are_accepted():
    accepted(with_attachments(*[make_attachment(f"f{i}", b"x") for i in range(100)]))


def test_more_than_one_hundred_attachments_are_bad_request():
    refused(
        with_attachments(*[make_attachment(f"f{i}", b"x") for i in range(101)]),
        "content.attachments",
    )


@pytest.mark.parametrize("value", [None, {}, "a", 1, attachment()])
def test_attachments_that_are_not_a_list_are_bad_request(value):
    refused(with_content({"subject": "s", "body": "b", "attachments": value}), "attachments")


@pytest.mark.parametrize("value", [None, "a.txt", 1, []])
def test_attachment_that_is_not_an_object_is_bad_request(value):
    refused(with_attachments(value), "content.attachments[0]")


@pytest.mark.parametrize("key", ["filename", "contentType", "size", "sha256", "data"])
def test_attachment_missing_a_field_is_bad_request_naming_it(key):
    att = attachment()
    del att[key]
    refused(with_attachments(att), f"content.attachments[0].{key}")


def test_attachment_with_unknown_field_is_bad_request():
    refused(with_attachments(attachment(inline=True)), "inline")


def test_error_names_the_index_of_the_bad_attachment():
    refused(with_attachments(attachment(), attachment(size=-1)), "content.attachments[1].size")


def test_attachment_size_not_matching_data_is_bad_request():
    refused(with_attachments(attachment(size=12)), "content.attachments[0].size")


@pytest.mark.parametrize("size", [-1, True, 11.0, "11", None])
def test_attachment_size_that_is_not_a_non_negative_integer_is_bad_request(size):
    refused(with_attachments(attachment(size=size)), "content.attachments[0].size")


def test_attachment_sha256_not_matching_data_is_bad_request():
    refused(
        with_attachments(attachment(sha256=hashlib.sha256(b"other").hexdigest())),
        "content.attachments[0].sha256",
    )


@pytest.mark.parametrize(
    "digest",
    [
        hashlib.sha256(b"hello world").hexdigest().upper(),
        hashlib.sha256(b"hello world").hexdigest()[:-1],
        hashlib.sha256(b"hello world").hexdigest() + "0",
        "g" * 64,
        None,
        1,
    ],
)
def test_attachment_sha256_that_is_not_64_lowercase_hex_is_bad_request(digest):
    refused(with_attachments(attachment(sha256=digest)), "content.attachments[0].sha256")


@pytest.mark.parametrize(
    "data",
    [
        "aGVsbG8gd29ybGQ",  # padding missing
        "aGVsbG8gd29y bGQ=",  # a space inside
        "aGVsbG8gd29ybGQ=\n",  # trailing newline
        "aGVsbG8*d29ybGQ=",  # not a base64 character
        "aGVsbG8gd29ybGQ=é",  # non-ASCII
        "aGVsbG8gd29ybGQ=====",
    ],
)
def test_attachment_data_that_is_not_valid_base64_is_bad_request(data):
    refused(with_attachments(attachment(data=data)), "content.attachments[0].data")


@pytest.mark.parametrize("data", [None, 1, ["aGk="], {"b64": "aGk="}])
def test_attachment_data_that_is_not_a_string_is_bad_request(data):
    refused(with_attachments(attachment(data=data)), "content.attachments[0].data")


@pytest.mark.parametrize(
    "filename", ["", ".", "..", "a/b", "../etc/passwd", "a\\b", "a\x00b", "n" * 256, None, 1]
)
def test_attachment_filename_that_is_not_a_plain_file_name_is_bad_request(filename):
    refused(with_attachments(attachment(filename=filename)), "content.attachments[0].filename")


@pytest.mark.parametrize("filename", ["n" * 255, "résumé.pdf", ".hidden", "a b.txt", "..."])
def test_attachment_plain_file_name_is_accepted(filename):
    accepted(with_attachments(attachment(filename=filename)))


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/vnd.ms-excel", "image/svg+xml", "A/B"]
)
def test_attachment_media_type_is_accepted(content_type):
    accepted(with_attachments(attachment(contentType=content_type)))


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain; charset=utf-8",
        "text/plain;charset=UTF-8",
        'text/plain; charset="utf-8"',
        'multipart/mixed; boundary="a b;c=d"; x-y=z',
        'application/x; name="quote \\" inside"',
        "text/plain;\tformat=flowed",
    ],
)
def test_attachment_media_type_with_rfc_2045_parameters_is_accepted(content_type):
    # Issue 11 item 13: parameters were refused.
    accepted(with_attachments(attachment(contentType=content_type)))


@pytest.mark.parametrize(
    "content_type",
    [
        "",
        "text",
        "text/",
        "/plain",
        "text/plain/x",
        "te xt/plain",
        None,
        1,
        "text/plain;",
        "text/plain; charset",
        "text/plain; charset=",
        "text/plain; =utf-8",
        "text/plain; charset=utf 8",
        "text/plain; charset=utf-8;",
        'text/plain; charset="utf-8',
        "text/plain; charset=a/b",
        "text/plain; charset=é",
        'text/plain; name="line\nbreak"',
        "text/plain; charset=" + "x" * 300,
    ],
)
def test_attachment_content_type_that_is_not_a_media_type_is_bad_request(content_type):
    refused(
        with_attachments(attachment(contentType=content_type)),
        "content.attachments[0].contentType",
    )


# ---------------------------------------------------------------------------- verification


def test_verification_that_is_not_an_object_is_bad_request():
    packet = make_packet()
    packet["verification"] = "abc"
    refused(packet, "verification")


def test_verification_with_unknown_field_is_bad_request():
    packet = make_packet()
    packet["verification"]["algorithm"] = "sha256"
    refused(packet, "algorithm")


@pytest.mark.parametrize(
    "value", [None, "", "abc", "A" * 64, "0" * 63, "0" * 65, "z" * 64, 1, ["0" * 64]]
)
def test_message_hash_that_is_not_64_lowercase_hex_is_bad_request(value):
    packet = make_packet()
    packet["verification"]["messageHash"] = value
    refused(packet, "verification.messageHash")


def test_missing_message_hash_is_bad_request():
    packet = make_packet()
    del packet["verification"]["messageHash"]
    refused(packet, "verification.messageHash")


def test_message_hash_mismatch_is_hash_mismatch():
    packet = make_packet()
    packet["verification"]["messageHash"] = "0" * 64
    refused(packet, "messageHash", HASH_MISMATCH)


def test_content_changed_after_hashing_is_hash_mismatch():
    packet = make_packet()
    packet["content"]["body"] += "!"
    refused(packet, "messageHash", HASH_MISMATCH)


def test_uppercase_hex_of_the_right_hash_is_refused():
    packet = make_packet()
    packet["verification"]["messageHash"] = packet["verification"]["messageHash"].upper()
    with pytest.raises(MMTPError) as info:
        accepted(packet)
    assert info.value.code == BAD_REQUEST


def test_message_hash_does_not_depend_on_content_key_order():
    packet = make_packet(clear_content("s", "b", [attachment()]))
    packet["content"] = dict(reversed(list(packet["content"].items())))
    packet["content"]["attachments"] = [dict(reversed(list(attachment().items())))]
    assert accepted(packet).message_hash == packet["verification"]["messageHash"]


def test_message_hash_of_encrypted_content_mismatch_is_hash_mismatch():
    packet = make_packet({"encrypted": ARMORED_MESSAGE})
    packet["content"]["encrypted"] = ARMORED_MESSAGE + "x"
    refused(packet, "messageHash", HASH_MISMATCH)


# ---------------------------------------------------------------------------- signature


@pytest.mark.parametrize("value", [None, ""])
def test_null_or_empty_signature_means_unsigned(value):
    packet = make_packet()
    packet["verification"]["signature"] = value
    result = accepted(packet)
    assert result.signature is None
    assert result.raw["meta"]["signed"] is False
    assert result.raw["verification"]["signature"] is None


def test_absent_signature_means_unsigned():
    packet = make_packet()
    del packet["verification"]["signature"]
    result = accepted(packet)
    assert result.signature is None
    assert result.raw["meta"]["signed"] is False


def test_armored_signature_marks_the_packet_signed():
    packet = make_packet()
    packet["verification"]["signature"] = ARMORED_SIGNATURE
    result = accepted(packet)
    assert result.signature == ARMORED_SIGNATURE
    assert result.raw["meta"]["signed"] is True
    assert result.raw["verification"]["signature"] == ARMORED_SIGNATURE


@pytest.mark.parametrize(
    "value",
    [
        "not a signature",
        ARMORED_MESSAGE,
        1,
        True,
        [ARMORED_SIGNATURE],
        {"sig": ARMORED_SIGNATURE},
        ARMORED_SIGNATURE + "x" * 20_000,
    ],
)
def test_signature_that_is_not_an_armored_detached_signature_is_bad_request(value):
    packet = make_packet()
    packet["verification"]["signature"] = value
    refused(packet, "verification.signature")


def test_signature_input_is_the_packet_without_verification_stamp_and_server_fields():
    # SPEC §3 rev 2 (the five-field input of revision 1 is gone).
    packet = make_packet(type="REPLY", in_reply_to=OTHER_ID, references=[OTHER_ID])
    packet["meta"]["notify"] = ["failure"]
    packet["meta"]["hashcashToken"] = {"token": "1:20:x", "counter": 1}
    packet["meta"]["receivedAt"] = NOW
    packet["meta"]["signatureVerified"] = True
    packet["meta"]["signed"] = True
    packet["verification"]["signature"] = ARMORED_SIGNATURE
    expected = canonical_json(
        {
            "meta": {
                "type": "REPLY",
                "messageId": MESSAGE_ID,
                "timestamp": NOW,
                "encrypted": False,
                "inReplyTo": OTHER_ID,
                "references": [OTHER_ID],
                "notify": ["failure"],
            },
            "sender": SENDER,
            "recipient": RECIPIENT,
            "content": packet["content"],
        }
    )
    assert signature_input_of(packet) == expected
    packet["sender"] = "(ALICE)%(EXAMPLE.ORG)"
    packet["recipient"] = "(Bob)%(example.com)"
    assert signature_input_of(packet) == expected  # only the addresses are lowercased
    result = accepted(packet)
    assert result.signature_input() == expected
    assert signature_input_of(result.raw) == expected


@pytest.mark.parametrize(
    "change",
    [
        lambda p: p["meta"].update(type="FORWARD"),
        lambda p: p["meta"].update(inReplyTo=OTHER_ID),
        lambda p: p["meta"].update(references=[OTHER_ID]),
        lambda p: p["meta"].update(notify=[]),
        lambda p: p["meta"].update(messageId=OTHER_ID),
        lambda p: p["meta"].update(timestamp=NOW + 1),
        lambda p: p["meta"].pop("encrypted"),
        lambda p: p["meta"].update(encrypted=None),
        lambda p: p.update(recipient="(carol)%(example.com)"),
        lambda p: p.update(sender="(carol)%(example.org)"),
        lambda p: p.update(content=clear_content("Hello", "How are you!")),
    ],
)
def test_signature_input_covers_every_field_the_sender_wrote(change):
    packet = make_packet()
    before = signature_input_of(packet)
    change(packet)
    assert signature_input_of(packet) != before


def test_signature_input_ignores_the_stamp_and_server_set_fields():
    packet = make_packet()
    before = signature_input_of(packet)
    packet["meta"].update(
        hashcashToken={"token": "t", "counter": 0}, signed=True, signatureVerified=True
    )
    packet["meta"]["receivedAt"] = NOW
    packet["verification"] = {"messageHash": "0" * 64, "signature": ARMORED_SIGNATURE}
    assert signature_input_of(packet) == before


def test_validation_keeps_covered_meta_keys_exactly_as_written():
    # A server that filled in meta.encrypted would break the sender's signature.
    packet = make_packet()
    del packet["meta"]["encrypted"]
    packet["meta"]["inReplyTo"] = None
    result = accepted(packet)
    assert "encrypted" not in result.raw["meta"]
    assert result.raw["meta"]["inReplyTo"] is None
    assert result.signature_input() == signature_input_of(packet)


# ---------------------------------------------------------------------------- build_packet


def test_built_packet_has_the_design_shape():
    packet = make_packet()
    assert packet["meta"] == {
        "type": "SEND",
        "messageId": MESSAGE_ID,
        "timestamp": NOW,
        "hashcashToken": None,
        "encrypted": False,
        "signed": False,
        "signatureVerified": False,
    }
    assert packet["verification"] == {
        "messageHash": message_hash(packet["content"]),
        "signature": None,
    }


def test_built_encrypted_packet_is_flagged_encrypted():
    assert make_packet({"encrypted": ARMORED_MESSAGE})["meta"]["encrypted"] is True


def test_build_packet_refuses_an_invalid_address():
    with pytest.raises(MMTPError) as info:
        make_packet(recipient="bob@example.com")
    assert info.value.code == INVALID_ADDRESS


# ---------------------------------------------------------------------------- revision 2 meta


@pytest.mark.parametrize("notify", [[], ["failure"], ["failure", "delay"], list(NOTIFY_EVENTS)])
def test_meta_notify_drawn_from_the_known_events_is_accepted(notify):
    packet = make_packet()
    packet["meta"]["notify"] = notify
    assert accepted(packet).raw["meta"]["notify"] == notify


@pytest.mark.parametrize(
    "notify", ["failure", ["never"], ["failure", "failure"], [1], {"failure": True}, ["FAILURE"]]
)
def test_meta_notify_that_is_not_a_list_of_known_events_is_bad_request(notify):
    packet = make_packet()
    packet["meta"]["notify"] = notify
    refused(packet, "meta.notify")


def test_meta_type_dsn_is_bad_request_in_a_send():
    # SPEC §10: only a server makes delivery status notifications.
    packet = make_packet()
    packet["meta"]["type"] = "DSN"
    refused(packet, "DSN")


def test_content_dsn_is_bad_request_in_a_send():
    packet = with_content({"subject": "s", "body": "b", "dsn": {"action": "delivered"}})
    refused(packet, "content.dsn")


@pytest.mark.parametrize(
    "extra",
    [
        {"x": 1},
        {"nested": {"token": {"token": {}}}},
        {"counter2": 0},
    ],
)
def test_hashcash_token_with_keys_beyond_token_and_counter_is_bad_request(extra):
    # Issue 11 item 2: extra keys, nested deep, jammed mailboxes.
    packet = make_packet()
    packet["meta"]["hashcashToken"] = {"token": "1:20:x", "counter": 1, **extra}
    refused(packet, "meta.hashcashToken")


def test_hashcash_token_with_only_token_and_counter_passes_packet_validation():
    packet = make_packet()
    packet["meta"]["hashcashToken"] = {"token": "1:20:x", "counter": 1}
    assert accepted(packet).stamp == {"token": "1:20:x", "counter": 1}
