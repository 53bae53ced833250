"""Property tests for the OpenPGP parsers: any input yields a value or the project's own
clean error, never an unexpected exception."""

from __future__ import annotations

import contextlib

import pytest
from helpers import armor, key_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmtp_proto import openpgp_packets, pgp
from mmtp_proto.errors import KEY_INVALID, LocalError, MMTPError

pytestmark = pytest.mark.secure

EMAIL = "(fuzz)%(example.com)"
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _mutations(data: bytes) -> st.SearchStrategy[bytes]:
    """Flip, cut or splice bytes of a real packet stream."""
    flip = st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)).map(
        lambda t: data[: t[0]] + bytes([t[1]]) + data[t[0] + 1 :]
    )
    cut = st.integers(0, len(data)).map(lambda n: data[:n])
    splice = st.tuples(st.integers(0, len(data)), st.binary(max_size=40)).map(
        lambda t: data[: t[0]] + t[1] + data[t[0] :]
    )
    return st.one_of(flip, cut, splice)


_KEY_BYTES = openpgp_packets.dearmor(key_for(EMAIL).public.armored, "PUBLIC KEY BLOCK")
_SIGNATURE = pgp.sign_detached(b"payload", key_for(EMAIL))
_SIG_BYTES = openpgp_packets.dearmor(_SIGNATURE, "SIGNATURE")


@SETTINGS
@given(
    st.one_of(
        st.text(max_size=300), _mutations(_KEY_BYTES).map(lambda b: armor(b, "PUBLIC KEY BLOCK"))
    )
)
def test_public_key_parsing_yields_a_key_or_key_invalid(text: str) -> None:
    try:
        pgp.PublicKey.from_armored(text)
    except MMTPError as exc:
        assert exc.code == KEY_INVALID
    try:
        pgp.validate_public_key_for(text, EMAIL)
    except MMTPError as exc:
        assert exc.code in (KEY_INVALID, "INVALID_ADDRESS")


@SETTINGS
@given(
    st.one_of(st.text(max_size=300), _mutations(_SIG_BYTES).map(lambda b: armor(b, "SIGNATURE")))
)
def test_signature_checking_yields_a_boolean(signature: str) -> None:
    assert isinstance(pgp.verify_detached(b"payload", signature, key_for(EMAIL).public), bool)
    assert pgp.verify_detached(b"other payload", signature, key_for(EMAIL).public) is False


@SETTINGS
@given(st.text(max_size=300))
def test_private_key_parsing_yields_a_key_or_a_local_error(text: str) -> None:
    with contextlib.suppress(LocalError):
        pgp.PrivateKey.from_armored(text)


@SETTINGS
@given(st.binary(max_size=400))
def test_packet_census_yields_packets_or_value_error(data: bytes) -> None:
    try:
        found = openpgp_packets.packets(data)
    except ValueError:
        return
    end = 0
    for _tag, start, length in found:
        assert start >= end and start + length <= len(data)
        end = start + length
    assert end == len(data)
