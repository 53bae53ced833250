"""The packets inside a decrypted OpenPGP message, read with a cap on decompressed size.

PGPy decompresses a compressed-data packet whole before anything looks at its size: an
833-character message expanded to 512 MiB (4.6 s, 1 GiB peak). Here decompression stops one
byte past the cap, so no more than the cap is ever allocated.
"""

from __future__ import annotations

import bz2
import zlib
from collections.abc import Iterator

SIGNATURE = 2
ONE_PASS_SIGNATURE = 4
COMPRESSED = 8
MARKER = 10
LITERAL = 11
PADDING = 21
# Signed-then-encrypted messages carry these around the data; they say nothing about it here.
_IGNORED = frozenset({SIGNATURE, ONE_PASS_SIGNATURE, MARKER, PADDING})


# One session-key packet per recipient (SPEC §9: To, Cc and the sender) plus the data.
MAX_MESSAGE_PACKETS = 256


class TooManyPackets(ValueError):
    """More packets than any real encrypted message has."""


class PlaintextTooLarge(ValueError):
    """The message would expand beyond the allowed number of bytes."""


def _length(data: bytes, i: int) -> tuple[int, int, bool]:
    """(body length, offset of the body, whether more parts follow) of a new-format length."""
    if i >= len(data):
        raise ValueError("truncated packet header")
    first = data[i]
    if first < 192:
        return first, i + 1, False
    if first < 224:
        if i + 1 >= len(data):
            raise ValueError("truncated packet header")
        return ((first - 192) << 8) + data[i + 1] + 192, i + 2, False
    if first == 255:
        if i + 5 > len(data):
            raise ValueError("truncated packet header")
        return int.from_bytes(data[i + 1 : i + 5], "big"), i + 5, False
    return 1 << (first & 0x1F), i + 1, True  # a partial body length


def stream_packets(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(tag, body) of each packet, partial and indeterminate lengths included (GnuPG streams
    compressed and literal data that way)."""
    i, end = 0, len(data)
    while i < end:
        first = data[i]
        if not first & 0x80:
            raise ValueError("not OpenPGP packet data")
        if first & 0x40:
            tag, i = first & 0x3F, i + 1
            chunks: list[bytes] = []
            more = True
            while more:
                length, i, more = _length(data, i)
                if i + length > end:
                    raise ValueError("a packet runs past the end of the data")
                chunks.append(data[i : i + length])
                i += length
            yield tag, b"".join(chunks)
            continue
        tag, size = (first >> 2) & 0x0F, (1, 2, 4, 0)[first & 0x03]
        if size == 0:  # indeterminate: to the end of the data
            yield tag, data[i + 1 :]
            return
        if i + size >= end:
            raise ValueError("truncated packet header")
        length, i = int.from_bytes(data[i + 1 : i + 1 + size], "big"), i + 1 + size
        if i + length > end:
            raise ValueError("a packet runs past the end of the data")
        yield tag, data[i : i + length]
        i += length


def check_message_shape(data: bytes) -> None:
    """Refuse an encrypted message with more packets than recipients could explain, before
    PGPy parses each of them."""
    for count, _ in enumerate(stream_packets(data), start=1):
        if count > MAX_MESSAGE_PACKETS:
            raise TooManyPackets(f"it has more than {MAX_MESSAGE_PACKETS} packets")


def decompress(body: bytes, max_bytes: int) -> bytes:
    """The contents of a compressed-data packet body; PlaintextTooLarge past `max_bytes`."""
    if not body:
        raise ValueError("empty compressed data packet")
    algorithm, payload = body[0], body[1:]
    try:
        if algorithm == 0:
            out = payload
        elif algorithm in (1, 2):  # ZIP is raw deflate, ZLIB has a header
            out = zlib.decompressobj(-15 if algorithm == 1 else 15).decompress(
                payload, max_bytes + 1
            )
        elif algorithm == 3:
            out = bz2.BZ2Decompressor().decompress(payload, max_length=max_bytes + 1)
        else:
            raise ValueError(f"unknown compression algorithm {algorithm}")
    except (zlib.error, OSError, EOFError) as exc:
        raise ValueError(f"the compressed data is damaged ({exc})") from None
    if len(out) > max_bytes:
        raise PlaintextTooLarge(f"it expands to more than {max_bytes} bytes")
    return out


def literal_data(data: bytes, max_bytes: int) -> bytes:
    """The contents of the one literal-data packet in a decrypted packet sequence.

    At most one level of compression is opened (no OpenPGP implementation nests it; bombs do).
    """
    found: bytes | None = None
    compressed = False
    for tag, body in stream_packets(data):
        if tag == COMPRESSED:
            if compressed or found is not None:
                raise ValueError("it holds more than one data packet")
            compressed = True
            for inner_tag, inner in stream_packets(decompress(body, max_bytes)):
                if inner_tag == COMPRESSED:
                    raise ValueError("it nests compressed data, which no sender needs")
                if inner_tag == LITERAL:
                    if found is not None:
                        raise ValueError("it holds more than one data packet")
                    found = _literal_contents(inner)
                elif inner_tag not in _IGNORED:
                    raise ValueError(f"unexpected packet type {inner_tag} in the message")
        elif tag == LITERAL:
            if found is not None or compressed:
                raise ValueError("it holds more than one data packet")
            found = _literal_contents(body)
        elif tag not in _IGNORED:
            raise ValueError(f"unexpected packet type {tag} in the message")
    if found is None:
        raise ValueError("it holds no data")
    if len(found) > max_bytes:
        raise PlaintextTooLarge(f"it holds more than {max_bytes} bytes")
    return found


def _literal_contents(body: bytes) -> bytes:
    # format octet, file name (length-prefixed), 4-byte date, then the data
    if len(body) < 2 or len(body) < 2 + body[1] + 4:
        raise ValueError("truncated literal data packet")
    return body[2 + body[1] + 4 :]
