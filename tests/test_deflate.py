"""permessage-deflate (RFC 7692): offer, response validation and the codec, sans-I/O.

Wire compatibility is checked against ``RefPeer``, a separate plain-zlib implementation
of the server's side written here from RFC 7692 §7.2, and against the RFC's own byte
examples (§7.2.3).
"""

from __future__ import annotations

import os
import tracemalloc
import zlib
from dataclasses import dataclass

import pytest

from wspool.exceptions import (
    WebSocketConfigurationException,
    WebSocketHandshakeException,
    WebSocketMessageTooBigException,
    WebSocketProtocolException,
)
from wspool.protocol.deflate import DeflateOptions, PerMessageDeflate, coerce_compression

TAIL = b"\x00\x00\xff\xff"
HELLO_721 = bytes.fromhex("f248cdc9c90700")  # RFC 7692 §7.2.3.1
HELLO_AGAIN_722 = bytes.fromhex("f200110000")  # RFC 7692 §7.2.3.2, second message
HELLO_STORED_723 = bytes.fromhex("000500faff48656c6c6f00")  # §7.2.3.3
HELLO_BFINAL_724 = bytes.fromhex("f348cdc9c9070000")  # §7.2.3.4
HELLO_TWO_BLOCKS_725 = bytes.fromhex("f24805000000ffffcac9c90700")  # §7.2.3.5


class RefPeer:
    """The server's half of permessage-deflate, straight from RFC 7692 §7.2 with zlib.

    ``wbits`` is the LZ77 window (raw deflate, hence negative wbits for zlib); zlib
    cannot compress with 8, so compression then uses 9 like any zlib-based server.
    """

    def __init__(self, wbits: int = 15, no_context_takeover: bool = False) -> None:
        self.wbits = wbits
        self.no_context_takeover = no_context_takeover
        self._deflater = self._new_deflater()
        self._inflater = zlib.decompressobj(-wbits)

    def _new_deflater(self) -> zlib._Compress:
        return zlib.compressobj(6, zlib.DEFLATED, -max(self.wbits, 9))

    def compress_message(self, data: bytes) -> bytes:
        if self.no_context_takeover:
            self._deflater = self._new_deflater()
        out = self._deflater.compress(data) + self._deflater.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(TAIL)
        return out[:-4]

    def decompress_message(self, payload: bytes, chunk: int | None = None) -> bytes:
        """Inflate one message; ``chunk`` feeds it a few bytes at a time, which makes
        zlib check every distance against the window (it cannot look into its output)."""
        if self.no_context_takeover:
            self._inflater = zlib.decompressobj(-self.wbits)
        data = payload + TAIL
        if chunk is None:
            return self._inflater.decompress(data)
        return b"".join(
            self._inflater.decompress(data[i : i + chunk]) for i in range(0, len(data), chunk)
        )


# --- offer (RFC 7692 §7.1) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (DeflateOptions(), "permessage-deflate; client_max_window_bits"),
        (DeflateOptions(client_max_window_bits=False), "permessage-deflate"),
        (
            DeflateOptions(client_max_window_bits=10),
            "permessage-deflate; client_max_window_bits=10",
        ),
        (
            DeflateOptions(server_max_window_bits=12),
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits",
        ),
        (
            DeflateOptions(server_no_context_takeover=True, client_max_window_bits=False),
            "permessage-deflate; server_no_context_takeover",
        ),
        (
            DeflateOptions(client_no_context_takeover=True, client_max_window_bits=False),
            "permessage-deflate; client_no_context_takeover",
        ),
        (
            DeflateOptions(
                client_max_window_bits=9,
                server_max_window_bits=8,
                client_no_context_takeover=True,
                server_no_context_takeover=True,
            ),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=8; client_max_window_bits=9",
        ),
    ],
)
def test_offer_rfc7692_s7_1(options: DeflateOptions, expected: str) -> None:
    assert options.offer() == expected


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"client_max_window_bits": 7}, "client_max_window_bits"),
        ({"client_max_window_bits": 16}, "client_max_window_bits"),
        ({"client_max_window_bits": "10"}, "client_max_window_bits"),
        ({"server_max_window_bits": 7}, "server_max_window_bits"),
        ({"server_max_window_bits": 16}, "server_max_window_bits"),
        ({"server_max_window_bits": True}, "server_max_window_bits"),
        ({"client_no_context_takeover": 1}, "client_no_context_takeover"),
        ({"server_no_context_takeover": "yes"}, "server_no_context_takeover"),
        ({"compress_level": -2}, "compress_level"),
        ({"compress_level": 10}, "compress_level"),
        ({"mem_level": 0}, "mem_level"),
        ({"mem_level": 10}, "mem_level"),
        ({"mem_level": 8.0}, "mem_level"),
        ({"min_size": -1}, "min_size"),
    ],
)
def test_options_reject_bad_values(kwargs: dict[str, object], option: str) -> None:
    with pytest.raises(WebSocketConfigurationException, match=option):
        DeflateOptions(**kwargs)  # type: ignore[arg-type]


def test_options_defaults() -> None:
    options = DeflateOptions()
    assert options.client_max_window_bits is True
    assert options.server_max_window_bits is None
    assert (options.compress_level, options.mem_level, options.min_size) == (6, 8, 1024)
    with pytest.raises(ValueError):  # the configuration error is also a ValueError
        DeflateOptions(mem_level=99)


# --- coerce_compression ----------------------------------------------------------------


@pytest.mark.parametrize("value", ["deflate", "permessage-deflate", "DEFLATE", True])
def test_coerce_compression_default(value: object) -> None:
    assert coerce_compression(value) == DeflateOptions()


@pytest.mark.parametrize("value", [None, False])
def test_coerce_compression_off(value: object) -> None:
    assert coerce_compression(value) is None


def test_coerce_compression_passes_options_and_dicts() -> None:
    options = DeflateOptions(server_max_window_bits=10)
    assert coerce_compression(options) is options
    assert coerce_compression({"server_max_window_bits": 10, "min_size": 0}) == DeflateOptions(
        server_max_window_bits=10, min_size=0
    )


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("gzip", "compression='gzip'"),
        (1, "compression= must be"),
        (["deflate"], "compression= must be"),
        ({"window": 10}, "unknown option"),
        ({"mem_level": 0}, "mem_level"),
    ],
)
def test_coerce_compression_rejects(value: object, fragment: str) -> None:
    with pytest.raises(WebSocketConfigurationException, match=fragment):
        coerce_compression(value)


# --- accept: valid responses (RFC 7692 §7.1) ---------------------------------------------


@dataclass
class Agreed:
    server_nct: bool = False
    client_nct: bool = False
    server_bits: int = 15
    client_bits: int = 15


VALID_RESPONSES = [
    # (offer, response params, agreed)
    (DeflateOptions(), [], Agreed()),
    (DeflateOptions(), [("client_max_window_bits", "10")], Agreed(client_bits=10)),
    (DeflateOptions(), [("client_max_window_bits", "8")], Agreed(client_bits=8)),
    # §7.1.2.1: the server may limit its own window unasked.
    (DeflateOptions(), [("server_max_window_bits", "9")], Agreed(server_bits=9)),
    # §7.1.1.1 / §7.1.1.2: no_context_takeover may come unasked.
    (DeflateOptions(), [("server_no_context_takeover", None)], Agreed(server_nct=True)),
    (DeflateOptions(), [("client_no_context_takeover", None)], Agreed(client_nct=True)),
    # §7.1.1.2: offering client_no_context_takeover is a promise kept without an echo.
    (DeflateOptions(client_no_context_takeover=True), [], Agreed(client_nct=True)),
    (
        DeflateOptions(server_no_context_takeover=True),
        [("server_no_context_takeover", None)],
        Agreed(server_nct=True),
    ),
    # §7.1.2.1: same or smaller value than requested.
    (
        DeflateOptions(server_max_window_bits=12),
        [("server_max_window_bits", "12")],
        Agreed(server_bits=12),
    ),
    (
        DeflateOptions(server_max_window_bits=12),
        [("server_max_window_bits", "8")],
        Agreed(server_bits=8),
    ),
    # §7.1.2.2: the value we offered caps our window, whatever the server says.
    (DeflateOptions(client_max_window_bits=10), [], Agreed(client_bits=10)),
    (
        DeflateOptions(client_max_window_bits=10),
        [("client_max_window_bits", "9")],
        Agreed(client_bits=9),
    ),
    (
        DeflateOptions(client_max_window_bits=10),
        [("client_max_window_bits", "12")],
        Agreed(client_bits=10),
    ),
    (DeflateOptions(client_max_window_bits=False), [], Agreed()),
    # Parameter names compare case-insensitively.
    (
        DeflateOptions(),
        [("Server_No_Context_Takeover", None), ("CLIENT_MAX_WINDOW_BITS", "11")],
        Agreed(server_nct=True, client_bits=11),
    ),
    (
        DeflateOptions(
            server_no_context_takeover=True,
            client_no_context_takeover=True,
            server_max_window_bits=10,
            client_max_window_bits=True,
        ),
        [
            ("client_max_window_bits", "14"),
            ("server_max_window_bits", "10"),
            ("client_no_context_takeover", None),
            ("server_no_context_takeover", None),
        ],
        Agreed(server_nct=True, client_nct=True, server_bits=10, client_bits=14),
    ),
]


@pytest.mark.parametrize(("offer", "params", "agreed"), VALID_RESPONSES)
def test_accept_valid_response_rfc7692_s7_1(
    offer: DeflateOptions, params: list[tuple[str, str | None]], agreed: Agreed
) -> None:
    codec = offer.accept(params, max_size=1000)
    assert isinstance(codec, PerMessageDeflate)
    got = Agreed(
        codec.server_no_context_takeover,
        codec.client_no_context_takeover,
        codec.server_max_window_bits,
        codec.client_max_window_bits,
    )
    assert got == agreed
    assert codec.max_size == 1000


def test_accept_carries_the_compression_settings() -> None:
    offer = DeflateOptions(compress_level=1, mem_level=3, min_size=7)
    codec = offer.accept([], max_size=None)
    assert (codec.compress_level, codec.mem_level, codec.min_size, codec.max_size) == (
        1,
        3,
        7,
        None,
    )


INVALID_RESPONSES = [
    # (offer, response params, message fragment)
    (DeflateOptions(), [("x_unknown", None)], "unknown parameter 'x_unknown'"),
    (DeflateOptions(), [("max_window_bits", "10")], "unknown parameter"),
    (
        DeflateOptions(),
        [("server_no_context_takeover", None), ("server_no_context_takeover", None)],
        "more than once",
    ),
    (
        DeflateOptions(),
        [("client_max_window_bits", "10"), ("client_max_window_bits", "10")],
        "more than once",
    ),
    (
        DeflateOptions(),
        [("server_no_context_takeover", "1")],
        "server_no_context_takeover takes no value",
    ),
    (
        DeflateOptions(),
        [("client_no_context_takeover", "")],
        "client_no_context_takeover takes no value",
    ),
    (DeflateOptions(), [("server_max_window_bits", None)], "server_max_window_bits needs a value"),
    (DeflateOptions(), [("server_max_window_bits", "7")], "not an integer from 8 to 15"),
    (DeflateOptions(), [("server_max_window_bits", "16")], "not an integer from 8 to 15"),
    (DeflateOptions(), [("server_max_window_bits", "010")], "leading zero"),
    (DeflateOptions(), [("server_max_window_bits", "09")], "leading zero"),
    (DeflateOptions(), [("server_max_window_bits", "+9")], "not an integer"),
    (DeflateOptions(), [("server_max_window_bits", " 9")], "not an integer"),
    (DeflateOptions(), [("server_max_window_bits", "9.0")], "not an integer"),
    (DeflateOptions(), [("server_max_window_bits", "\u0661\u0660")], "not an integer"),
    (DeflateOptions(), [("client_max_window_bits", None)], "client_max_window_bits needs a value"),
    (DeflateOptions(), [("client_max_window_bits", "0")], "not an integer"),
    (DeflateOptions(), [("client_max_window_bits", "abc")], "not an integer"),
    # §7.1.2.2: not offered -> must not appear in the response.
    (
        DeflateOptions(client_max_window_bits=False),
        [("client_max_window_bits", "10")],
        "did not offer",
    ),
    # §7.1.2.1: a requested server_max_window_bits comes back with the same or a smaller value.
    (
        DeflateOptions(server_max_window_bits=10),
        [],
        "server_max_window_bits=10 but the server did not accept",
    ),
    (
        DeflateOptions(server_max_window_bits=10),
        [("server_max_window_bits", "11")],
        "larger than the 10 we asked for",
    ),
    # §7.1.1.1: requested server_no_context_takeover must be echoed.
    (
        DeflateOptions(server_no_context_takeover=True),
        [],
        "server_no_context_takeover but the server did not accept",
    ),
]


@pytest.mark.parametrize(("offer", "params", "fragment"), INVALID_RESPONSES)
def test_accept_invalid_response_fails_rfc7692_s7_1(
    offer: DeflateOptions, params: list[tuple[str, str | None]], fragment: str
) -> None:
    with pytest.raises(WebSocketHandshakeException) as info:
        offer.accept(params, max_size=None)
    message = str(info.value)
    assert fragment in message
    assert "permessage-deflate" in message and "compression=None" in message


# --- RFC 7692 §7.2.3 examples ------------------------------------------------------------


def test_hello_compresses_to_rfc_bytes_s7_2_3_1() -> None:
    assert PerMessageDeflate().compress(b"Hello") == HELLO_721


def test_hello_decompresses_from_rfc_bytes_s7_2_3_1() -> None:
    assert PerMessageDeflate().decompress(HELLO_721, True, None) == b"Hello"


def test_shared_sliding_window_s7_2_3_2() -> None:
    sender = PerMessageDeflate()
    assert sender.compress(b"Hello") == HELLO_721
    assert sender.compress(b"Hello") == HELLO_AGAIN_722
    receiver = PerMessageDeflate()
    assert receiver.decompress(HELLO_721, True, None) == b"Hello"
    assert receiver.decompress(HELLO_AGAIN_722, True, None) == b"Hello"


def test_no_compression_block_s7_2_3_3() -> None:
    codec = PerMessageDeflate()
    assert codec.decompress(HELLO_STORED_723, True, None) == b"Hello"
    assert codec.decompress(HELLO_721, True, None) == b"Hello"


def test_bfinal_block_then_more_messages_s7_2_3_4() -> None:
    codec = PerMessageDeflate()
    assert codec.decompress(HELLO_BFINAL_724, True, None) == b"Hello"
    # The decoder must not stay finished after a final block.
    assert codec.decompress(HELLO_721, True, None) == b"Hello"
    assert codec.decompress(HELLO_BFINAL_724, True, None) == b"Hello"
    assert codec.decompress(HELLO_721, True, None) == b"Hello"


def test_bfinal_block_without_trailing_empty_block_is_tolerated() -> None:
    codec = PerMessageDeflate()
    assert codec.decompress(HELLO_BFINAL_724[:-1], True, None) == b"Hello"
    assert codec.decompress(HELLO_721, True, None) == b"Hello"


def test_new_deflate_stream_after_bfinal_in_one_message() -> None:
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    second = deflater.compress(b" world") + deflater.flush(zlib.Z_SYNC_FLUSH)
    payload = HELLO_BFINAL_724[:-1] + second[:-4]
    codec = PerMessageDeflate()
    assert codec.decompress(payload, True, None) == b"Hello world"
    assert codec.decompress(HELLO_721, True, None) == b"Hello"


def test_bfinal_split_across_frames() -> None:
    codec = PerMessageDeflate()
    assert codec.decompress(HELLO_BFINAL_724[:-1], False, None) == b"Hello"
    assert codec.decompress(HELLO_BFINAL_724[-1:], True, None) == b""
    assert codec.decompress(HELLO_721, True, None) == b"Hello"


def test_two_deflate_blocks_in_one_message_s7_2_3_5() -> None:
    assert PerMessageDeflate().decompress(HELLO_TWO_BLOCKS_725, True, None) == b"Hello"


def test_empty_message_s7_2_3_6() -> None:
    sender = PerMessageDeflate()
    assert sender.compress(b"") == b"\x00"
    assert sender.compress(b"") == b"\x00"  # nothing new to flush: still a valid block
    peer = RefPeer()
    assert peer.decompress_message(b"\x00") == b""
    receiver = PerMessageDeflate()
    assert receiver.decompress(b"\x00", True, 0) == b""
    # Some senders send an empty payload for an empty message; later messages still work.
    assert receiver.decompress(b"", True, 0) == b""
    assert receiver.decompress(HELLO_721, True, None) == b"Hello"


# --- round trips with the reference peer (RFC 7692 §7.2.1, §7.2.2) ---------------------

MESSAGES = [
    b"Hello",
    b'{"op":"subscribe","args":["trades","book"]}' * 3,
    os.urandom(3000),
    bytes(range(256)) * 40,
    b"",
    b"x",
]


def test_client_messages_decode_with_reference_peer() -> None:
    codec = PerMessageDeflate()
    peer = RefPeer()
    for message in MESSAGES * 2:
        assert peer.decompress_message(codec.compress(message)) == message


def test_server_messages_decode_with_context_takeover() -> None:
    codec = PerMessageDeflate()
    peer = RefPeer()
    for message in MESSAGES * 2:
        assert codec.decompress(peer.compress_message(message), True, None) == message


def test_accepts_bytearray_and_memoryview() -> None:
    codec = PerMessageDeflate()
    peer = RefPeer()
    payload = codec.compress(memoryview(b"abcabcabc"))
    assert peer.decompress_message(payload) == b"abcabcabc"
    payload = codec.compress(bytearray(b"defdefdef"))
    assert peer.decompress_message(payload) == b"defdefdef"
    wire = peer.compress_message(b"ghighighi")
    assert codec.decompress(memoryview(wire), True, 100) == b"ghighighi"
    wire = peer.compress_message(b"jkljkljkl")
    assert codec.decompress(bytearray(wire), True, 100) == b"jkljkljkl"


def test_compress_level_is_used() -> None:
    data = b"abcd" * 100
    stored = PerMessageDeflate(compress_level=0).compress(data)
    assert data in stored  # level 0 writes stored blocks
    assert len(PerMessageDeflate(compress_level=9).compress(data)) < 40
    assert RefPeer().decompress_message(stored) == data


# --- context takeover (RFC 7692 §7.1.1) ---------------------------------------------------

REPEATED = b'{"channel":"trades","symbol":"BTC-USD","side":"buy","price":"64000.5"}'


def test_context_takeover_makes_the_second_message_smaller_s7_1_1() -> None:
    codec = PerMessageDeflate()
    first = codec.compress(REPEATED)
    second = codec.compress(REPEATED)
    assert len(second) < len(first) // 3
    peer = RefPeer()
    assert peer.decompress_message(first) == REPEATED
    assert peer.decompress_message(second) == REPEATED


def test_client_no_context_takeover_compresses_each_message_alone_s7_1_1_2() -> None:
    codec = PerMessageDeflate(client_no_context_takeover=True)
    first = codec.compress(REPEATED)
    second = codec.compress(REPEATED)
    assert second == first
    # A fresh inflater per message decodes them: nothing refers to an earlier message.
    peer = RefPeer(no_context_takeover=True)
    for _ in range(3):
        assert peer.decompress_message(codec.compress(REPEATED + b"!")) == REPEATED + b"!"


def test_server_no_context_takeover_messages_decode_s7_1_1_1() -> None:
    codec = PerMessageDeflate(server_no_context_takeover=True)
    peer = RefPeer(no_context_takeover=True)
    for message in MESSAGES * 2:
        assert codec.decompress(peer.compress_message(message), True, None) == message


def test_server_no_context_takeover_forgets_the_window_s7_1_1_1() -> None:
    """After agreeing to server_no_context_takeover, a reference into the previous
    message is corrupt data, not silently accepted."""
    codec = PerMessageDeflate(server_no_context_takeover=True)
    cheater = RefPeer()  # keeps its context anyway
    assert codec.decompress(cheater.compress_message(REPEATED), True, None) == REPEATED
    with pytest.raises(WebSocketProtocolException) as info:
        codec.decompress(cheater.compress_message(REPEATED), True, None)
    assert info.value.close_code == 1007


def test_server_context_takeover_keeps_the_window() -> None:
    codec = PerMessageDeflate()
    peer = RefPeer()
    assert codec.decompress(peer.compress_message(REPEATED), True, None) == REPEATED
    second = peer.compress_message(REPEATED)
    assert len(second) < 10  # only a back-reference into the first message
    assert codec.decompress(second, True, None) == REPEATED


# --- window bits 8..15 (RFC 7692 §7.1.2) --------------------------------------------------


def far_repeats(bits: int) -> list[bytes]:
    """Messages whose repeats lie just beyond a 2**bits window: a compressor using a
    larger window would refer to them, which an inflater of that window rejects."""
    block = os.urandom((1 << bits) + 40)
    return [block[:1000], block[1000:], block[:1000] + block[:1000], block]


@pytest.mark.parametrize("bits", range(8, 16))
def test_client_window_bits_respected_rfc7692_s7_1_2_2(bits: int) -> None:
    codec = DeflateOptions().accept([("client_max_window_bits", str(bits))], max_size=None)
    assert codec.client_max_window_bits == bits
    peer = RefPeer(wbits=bits)
    for message in far_repeats(bits):
        # Small chunks make zlib check each distance against the agreed window.
        assert peer.decompress_message(codec.compress(message), chunk=64) == message


@pytest.mark.parametrize("bits", range(8, 16))
def test_server_window_bits_rfc7692_s7_1_2_1(bits: int) -> None:
    codec = DeflateOptions(server_max_window_bits=bits).accept(
        [("server_max_window_bits", str(bits))], max_size=None
    )
    assert codec.server_max_window_bits == bits
    peer = RefPeer(wbits=bits)
    for message in [*far_repeats(bits), REPEATED, REPEATED]:
        assert codec.decompress(peer.compress_message(message), True, None) == message


def test_server_window_of_15_is_used_when_not_limited() -> None:
    codec = DeflateOptions().accept([], max_size=None)
    peer = RefPeer(wbits=15)
    block = os.urandom(20000)
    assert codec.decompress(peer.compress_message(block), True, None) == block
    again = peer.compress_message(block)
    assert len(again) < 500  # back-references 20000 bytes long
    assert codec.decompress(again, True, None) == block


# --- fragmented messages (RFC 7692 §6.1, §7.2.1) -------------------------------------------


def test_fragmented_outgoing_message() -> None:
    codec = PerMessageDeflate()
    peer_inflater = zlib.decompressobj(-15)
    parts = [b"first part, ", b"second part, ", b"", b"last part"]
    payloads = [codec.compress(part, fin=i == len(parts) - 1) for i, part in enumerate(parts)]
    # Every non-final fragment is flushed: it decodes as soon as it arrives.
    for part, payload in zip(parts[:-1], payloads[:-1], strict=True):
        assert peer_inflater.decompress(payload) == part
    assert peer_inflater.decompress(payloads[-1] + TAIL) == parts[-1]
    # Joined, the fragments are one ordinary compressed message.
    assert RefPeer().decompress_message(b"".join(payloads)) == b"".join(parts)


def test_fragmented_outgoing_message_with_empty_last_fragment() -> None:
    codec = PerMessageDeflate()
    payload = codec.compress(b"abc", fin=False) + codec.compress(b"", fin=True)
    peer = RefPeer()
    assert peer.decompress_message(payload) == b"abc"
    assert peer.decompress_message(codec.compress(b"abc")) == b"abc"


@pytest.mark.parametrize("frame_size", [1, 7, 100, 4096])
def test_fragmented_incoming_message(frame_size: int) -> None:
    message = (b"market data " * 500) + os.urandom(2000)
    peer = RefPeer()
    codec = PerMessageDeflate()
    for _ in range(2):  # the second message leans on the first's window
        wire = peer.compress_message(message)
        frames = [wire[i : i + frame_size] for i in range(0, len(wire), frame_size)]
        out = [codec.decompress(frame, False, None) for frame in frames[:-1]]
        out.append(codec.decompress(frames[-1], True, None))
        assert b"".join(out) == message


def test_fragmented_incoming_message_with_empty_frames() -> None:
    wire = RefPeer().compress_message(REPEATED)
    codec = PerMessageDeflate()
    out = codec.decompress(b"", False, None)
    out += codec.decompress(wire, False, None)
    out += codec.decompress(b"", False, None)
    out += codec.decompress(b"", True, None)
    assert out == REPEATED


# --- bounded decompression --------------------------------------------------------------


def test_limit_exactly_reached_is_accepted() -> None:
    message = b"z" * 5000
    wire = RefPeer().compress_message(message)
    assert PerMessageDeflate().decompress(wire, True, 5000) == message


def test_limit_exceeded_by_one_byte_raises_1009() -> None:
    wire = RefPeer().compress_message(b"z" * 5000)
    with pytest.raises(WebSocketMessageTooBigException) as info:
        PerMessageDeflate(max_size=4999).decompress(wire, True, 4999)
    assert info.value.close_code == 1009
    assert "max_size=4999" in str(info.value)


def test_zero_budget_allows_only_empty_output() -> None:
    codec = PerMessageDeflate()
    assert codec.decompress(b"\x00", True, 0) == b""
    with pytest.raises(WebSocketMessageTooBigException, match="budget of 0 bytes"):
        codec.decompress(HELLO_721, True, 0)


def receive_in_frames(codec: PerMessageDeflate, wire: bytes, size: int, max_size: int) -> bytes:
    """Decompress ``wire`` in frames of ``size`` bytes the way the connection does:
    each frame gets what is left of the message's budget."""
    frames = [wire[i : i + size] for i in range(0, len(wire), size)]
    out: list[bytes] = []
    received = 0
    for i, frame in enumerate(frames):
        out.append(codec.decompress(frame, i == len(frames) - 1, max_size - received))
        received += len(out[-1])
    return b"".join(out)


def test_budget_spread_over_frames() -> None:
    message = os.urandom(300) * 20
    wire = RefPeer().compress_message(message)
    assert receive_in_frames(PerMessageDeflate(), wire, 50, len(message)) == message
    with pytest.raises(WebSocketMessageTooBigException):
        receive_in_frames(PerMessageDeflate(), wire, 50, len(message) - 1)


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    """100 MiB of zeros, compressed to about 100 kB."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(1 << 20)
    body = b"".join(deflater.compress(zeros) for _ in range(100))
    wire = body + deflater.flush(zlib.Z_SYNC_FLUSH)
    return wire[:-4]


def test_zip_bomb_is_stopped_without_inflating_it(zip_bomb: bytes) -> None:
    assert len(zip_bomb) < 200_000
    codec = PerMessageDeflate(max_size=1 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(WebSocketMessageTooBigException) as info:
            codec.decompress(zip_bomb, True, 1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.close_code == 1009
    # The input is copied once with the tail and at most max_size + 1 bytes come out.
    assert peak < 8 << 20


def test_zip_bomb_in_fragments_is_stopped(zip_bomb: bytes) -> None:
    codec = PerMessageDeflate(max_size=1 << 20)
    budget = 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(WebSocketMessageTooBigException):
            for i in range(0, len(zip_bomb), 1000):
                budget -= len(codec.decompress(zip_bomb[i : i + 1000], False, budget))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


# --- corrupt input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xff\xff\xff",  # BTYPE 11 is reserved (RFC 1951 §3.2.3)
        b"\x00\x05\x00\x00\x00Hello",  # stored block whose NLEN is not ~LEN
        bytes.fromhex("f248cdc9c907ff"),  # an invalid distance code
        bytes.fromhex("fcffffffff"),  # a dynamic block header with too many codes
        HELLO_AGAIN_722,  # refers back past the start of the stream
        HELLO_BFINAL_724[:-1] + b"\xff\xff",  # garbage after the final block
    ],
)
def test_corrupt_data_raises_1007(payload: bytes) -> None:
    with pytest.raises(WebSocketProtocolException) as info:
        PerMessageDeflate().decompress(payload, True, 1 << 20)
    assert not isinstance(info.value, WebSocketMessageTooBigException)
    assert info.value.close_code == 1007
    assert str(info.value).startswith("invalid compressed data")


def test_distance_beyond_the_agreed_server_window_is_rejected() -> None:
    """A server that agreed to a 9-bit window but refers 1000 bytes back sends corrupt
    data for us (RFC 7692 §7.1.2.1)."""
    codec = PerMessageDeflate(server_max_window_bits=9)
    cheater = RefPeer(wbits=15)
    block = os.urandom(1000)
    codec.decompress(cheater.compress_message(block), True, None)
    with pytest.raises(WebSocketProtocolException) as info:
        codec.decompress(cheater.compress_message(block), True, None)
    assert info.value.close_code == 1007


def test_codec_rejects_bad_parameters() -> None:
    with pytest.raises(WebSocketConfigurationException, match="client_max_window_bits"):
        PerMessageDeflate(client_max_window_bits=16)
    with pytest.raises(WebSocketConfigurationException, match="server_max_window_bits"):
        PerMessageDeflate(server_max_window_bits=7)
