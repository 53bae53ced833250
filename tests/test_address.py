"""SPEC §2: `(name)%(domain)` addresses, one rule per test."""

from __future__ import annotations

import pytest

from mmtp_proto.address import Address, is_valid_domain, normalize_address, parse_address
from mmtp_proto.errors import INVALID_ADDRESS, MMTPError


def assert_invalid(value: object, field: str = "address") -> MMTPError:
    with pytest.raises(MMTPError) as info:
        parse_address(value, field)
    assert info.value.code == INVALID_ADDRESS
    return info.value


def addr(name: str, domain: str = "example.com") -> str:
    return f"({name})%({domain})"


# ---------------------------------------------------------------------------- shape


def test_well_formed_address_parses_into_name_and_domain():
    assert parse_address("(alice)%(example.com)") == Address("alice", "example.com")


def test_address_renders_back_to_its_wire_form():
    assert str(Address("alice", "example.com")) == "(alice)%(example.com)"


@pytest.mark.parametrize(
    "value",
    [
        "alice@example.com",
        "alice%example.com",
        "(alice)%example.com",
        "alice%(example.com)",
        "(alice)(example.com)",
        "(alice)%%(example.com)",
        "(alice)%(example.com)x",
        "x(alice)%(example.com)",
        " (alice)%(example.com)",
        "(alice)%(example.com) ",
        "(alice)%(example.com)\n",
        "((alice))%(example.com)",
        "(al(ice)%(example.com)",
        "(alice)%(exa%mple.com)",
        "()%()",
        "",
    ],
)
def test_address_not_of_the_form_name_percent_domain_is_invalid(value):
    assert_invalid(value)


@pytest.mark.parametrize("value", [None, 1, 1.5, True, b"(alice)%(example.com)", ["a"], {}])
def test_address_that_is_not_a_string_is_invalid(value):
    assert_invalid(value)


def test_absurdly_long_address_is_invalid():
    assert_invalid(addr("a" * 10_000))


def test_invalid_address_error_names_the_field():
    err = assert_invalid("nobody", field="recipient")
    assert "recipient" in err.message


# ---------------------------------------------------------------------------- name


def test_name_may_use_every_allowed_character():
    name = "abcdefghijklmnopqrstuvwxyz0123456789._+-x"
    assert parse_address(addr(name)).name == name


@pytest.mark.parametrize("name", ["_", "+", "-", "-a", "a-", "_a_", "a+tag", "0"])
def test_name_of_allowed_characters_without_dot_rules_broken_is_valid(name):
    assert parse_address(addr(name)).name == name


def test_name_of_one_character_is_valid():
    assert parse_address(addr("a")).name == "a"


def test_name_of_64_characters_is_valid():
    assert parse_address(addr("a" * 64)).name == "a" * 64


def test_name_of_65_characters_is_invalid():
    assert_invalid(addr("a" * 65))


def test_empty_name_is_invalid():
    assert_invalid(addr(""))


def test_name_starting_with_dot_is_invalid():
    assert_invalid(addr(".alice"))


def test_name_ending_with_dot_is_invalid():
    assert_invalid(addr("alice."))


def test_name_that_is_only_a_dot_is_invalid():
    assert_invalid(addr("."))


def test_address_with_double_dot_is_invalid():
    assert_invalid(addr("al..ice"))


def test_name_with_single_inner_dots_is_valid():
    assert parse_address(addr("a.l.ice")).name == "a.l.ice"


@pytest.mark.parametrize(
    "char", [" ", "@", "!", "#", "$", "&", "*", "/", "\\", ":", ";", ",", "=", "~", "'", '"']
)
def test_name_with_a_character_outside_the_allowed_set_is_invalid(char):
    assert_invalid(addr(f"al{char}ice"))


@pytest.mark.parametrize("char", ["\t", "\n", "\r", "\x00", "\x7f"])
def test_name_with_a_control_character_is_invalid(char):
    assert_invalid(addr(f"al{char}ice"))


# ---------------------------------------------------------------------------- non-ASCII


@pytest.mark.parametrize(
    "value",
    [
        addr("jösé"),
        addr("alice", "exämple.com"),
        addr("алиса"),
        addr("alice", "пример.рф"),
        addr("ａlice"),  # fullwidth a
        addr("\u212aelvin"),  # KELVIN SIGN, whose lower() is ASCII "k"
        addr("\u017fam"),  # LATIN SMALL LETTER LONG S, whose upper() is ASCII "S"
        addr("\u0130nci"),  # LATIN CAPITAL LETTER I WITH DOT ABOVE
        addr("alice", "\u212aexample.com"),
        addr("alice\u200b"),  # zero-width space
    ],
)
def test_non_ascii_address_is_refused(value):
    assert_invalid(value)


def test_punycode_domain_is_valid():
    assert parse_address(addr("alice", "xn--bcher-kva.example")).domain == ("xn--bcher-kva.example")


# ---------------------------------------------------------------------------- lowercasing


def test_uppercase_address_is_lowercased():
    assert parse_address("(Alice.SMITH)%(Example.COM)") == Address("alice.smith", "example.com")


def test_normalize_address_returns_the_lowercased_wire_form():
    assert normalize_address("(ALICE)%(EXAMPLE.COM)") == "(alice)%(example.com)"


def test_normalize_address_is_idempotent():
    once = normalize_address("(Bob+Tag)%(Mail.Example.ORG)")
    assert normalize_address(once) == once


def test_normalize_address_refuses_what_parse_address_refuses():
    with pytest.raises(MMTPError) as info:
        normalize_address("(a..b)%(example.com)", "sender")
    assert info.value.code == INVALID_ADDRESS
    assert "sender" in info.value.message


def test_uppercase_localhost_is_accepted_as_localhost():
    assert parse_address("(alice)%(LOCALHOST)").domain == "localhost"


# ---------------------------------------------------------------------------- domain


def test_localhost_is_a_valid_domain():
    assert parse_address(addr("alice", "localhost")).domain == "localhost"


def test_localhost_with_trailing_dot_is_invalid():
    assert_invalid(addr("alice", "localhost."))


def test_domain_without_a_dot_is_invalid():
    assert_invalid(addr("alice", "example"))


def test_domain_with_trailing_dot_is_invalid():
    assert_invalid(addr("alice", "example.com."))


def test_domain_with_leading_dot_is_invalid():
    assert_invalid(addr("alice", ".example.com"))


def test_domain_with_empty_label_is_invalid():
    assert_invalid(addr("alice", "example..com"))


def test_empty_domain_is_invalid():
    assert_invalid(addr("alice", ""))


def test_domain_label_of_one_character_is_valid():
    assert parse_address(addr("alice", "a.b")).domain == "a.b"


def test_domain_label_of_63_characters_is_valid():
    domain = "a" * 63 + ".com"
    assert parse_address(addr("alice", domain)).domain == domain


def test_domain_label_of_64_characters_is_invalid():
    assert_invalid(addr("alice", "a" * 64 + ".com"))


def test_domain_label_starting_with_hyphen_is_invalid():
    assert_invalid(addr("alice", "-example.com"))


def test_domain_label_ending_with_hyphen_is_invalid():
    assert_invalid(addr("alice", "example-.com"))


def test_domain_last_label_ending_with_hyphen_is_invalid():
    assert_invalid(addr("alice", "example.com-"))


def test_domain_label_with_inner_hyphens_is_valid():
    assert parse_address(addr("alice", "my--mail-host.example")).domain == "my--mail-host.example"


def test_domain_label_that_is_only_a_hyphen_is_invalid():
    assert_invalid(addr("alice", "-.com"))


def test_numeric_domain_labels_are_valid():
    assert parse_address(addr("alice", "127.0.0.1")).domain == "127.0.0.1"


@pytest.mark.parametrize("char", ["_", "+", "!", " ", "*", "/", ":"])
def test_domain_with_a_character_outside_letters_digits_hyphen_is_invalid(char):
    assert_invalid(addr("alice", f"exa{char}mple.com"))


def _domain_of_length(total: int) -> str:
    labels = []
    remaining = total
    while remaining > 0:
        size = min(63, remaining)
        if remaining - size == 1:  # avoid leaving room for only the dot
            size -= 1
        labels.append("a" * size)
        remaining -= size + 1
    domain = ".".join(labels)
    assert len(domain) == total
    return domain


def test_domain_of_253_characters_is_valid():
    domain = _domain_of_length(253)
    assert parse_address(addr("alice", domain)).domain == domain


def test_domain_of_254_characters_is_invalid():
    assert_invalid(addr("alice", _domain_of_length(254)))


def test_longest_valid_name_and_longest_valid_domain_together_are_valid():
    domain = _domain_of_length(253)
    assert parse_address(addr("n" * 64, domain)) == Address("n" * 64, domain)


# ---------------------------------------------------------------------------- is_valid_domain


@pytest.mark.parametrize(
    "domain", ["localhost", "example.com", "a.b", "mail.example.co.uk", "xn--d1acufc.xn--p1ai"]
)
def test_is_valid_domain_accepts_dns_names_and_localhost(domain):
    assert is_valid_domain(domain)


@pytest.mark.parametrize(
    "domain",
    [
        "",
        "example",
        "example.com.",
        ".example.com",
        "example..com",
        "-a.com",
        "a-.com",
        "a_b.com",
        "exämple.com",
        "a" * 64 + ".com",
        _domain_of_length(254),
        "localhost.",
    ],
)
def test_is_valid_domain_refuses_anything_else(domain):
    assert not is_valid_domain(domain)


@pytest.mark.parametrize("raw", ["(a)%(b.c)", "(X.y+Z)%(Mail.Example.COM)", "(n)%(localhost)"])
def test_domain_of_a_normalized_address_is_its_parsed_domain(raw: str) -> None:
    from mmtp_proto.address import domain_of

    normalized = normalize_address(raw)
    assert domain_of(normalized) == parse_address(normalized).domain
