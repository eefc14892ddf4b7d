"""Tests of ``wspool.abnf``: websocket-client's ``ABNF`` frame class and ``STATUS_*``.

Sans-I/O byte comparisons against the examples of RFC 6455 §5.7 and against the test
server's independent encoder, plus one real-socket round trip through the test
server's frame parser.
"""

from __future__ import annotations

import array
import os
import socket
from collections.abc import Callable
from typing import Any

import pytest
import wsserver
from wsserver import ServerConnection, WSServer

from wspool.abnf import (
    ABNF,
    STATUS_ABNORMAL_CLOSED,
    STATUS_BAD_GATEWAY,
    STATUS_GOING_AWAY,
    STATUS_INVALID_EXTENSION,
    STATUS_INVALID_PAYLOAD,
    STATUS_MESSAGE_TOO_BIG,
    STATUS_NORMAL,
    STATUS_POLICY_VIOLATION,
    STATUS_PROTOCOL_ERROR,
    STATUS_SERVICE_RESTART,
    STATUS_STATUS_NOT_AVAILABLE,
    STATUS_TLS_HANDSHAKE_ERROR,
    STATUS_TRY_AGAIN_LATER,
    STATUS_UNEXPECTED_CONDITION,
    STATUS_UNSUPPORTED_DATA_TYPE,
    VALID_CLOSE_STATUS,
)
from wspool.exceptions import (
    WebSocketConfigurationException,
    WebSocketPayloadException,
    WebSocketProtocolException,
)
from wspool.protocol.frames import CloseCode, Opcode

WSServerFactory = Callable[..., WSServer]

#: The masking key of the masked examples in RFC 6455 §5.7.
RFC_KEY = bytes.fromhex("37fa213d")


def fixed_key(key: bytes | str) -> Callable[[int], bytes | str]:
    """A ``get_mask_key`` that always returns ``key``."""
    return lambda n: key


def unmask_frame(raw: bytes) -> tuple[int, int, bytes, bytes]:
    """(byte 0, length, key, unmasked payload) of one masked frame, decoded naively
    (one byte at a time) so it shares nothing with the code under test."""
    length = raw[1] & 0x7F
    pos = 2
    if length == 126:
        length, pos = int.from_bytes(raw[2:4], "big"), 4
    elif length == 127:
        length, pos = int.from_bytes(raw[2:10], "big"), 10
    assert raw[1] & 0x80, "frame is not masked"
    key = raw[pos : pos + 4]
    body = raw[pos + 4 :]
    assert len(body) == length
    return raw[0], length, key, bytes(b ^ key[i % 4] for i, b in enumerate(body))


# ---------------------------------------------------------------- RFC 6455 §5.7


def test_single_unmasked_text_frame_rfc6455_5_7() -> None:
    expected = bytes.fromhex("810548656c6c6f")
    assert ABNF(1, 0, 0, 0, ABNF.OPCODE_TEXT, 0, b"Hello").format() == expected
    assert ABNF(1, 0, 0, 0, ABNF.OPCODE_TEXT, 0, "Hello").format() == expected


def test_single_masked_text_frame_rfc6455_5_7() -> None:
    frame = ABNF.create_frame("Hello", ABNF.OPCODE_TEXT)
    frame.get_mask_key = fixed_key(RFC_KEY)
    assert frame.format() == bytes.fromhex("818537fa213d7f9f4d5158")


def test_fragmented_unmasked_text_rfc6455_5_7() -> None:
    first = ABNF(0, 0, 0, 0, ABNF.OPCODE_TEXT, 0, b"Hel")
    last = ABNF(1, 0, 0, 0, ABNF.OPCODE_CONT, 0, b"lo")
    assert first.format() == bytes.fromhex("010348656c")
    assert last.format() == bytes.fromhex("80026c6f")


def test_unmasked_ping_and_masked_pong_rfc6455_5_7() -> None:
    assert ABNF(1, 0, 0, 0, ABNF.OPCODE_PING, 0, b"Hello").format() == bytes.fromhex(
        "890548656c6c6f"
    )
    pong = ABNF.create_frame(b"Hello", ABNF.OPCODE_PONG)
    pong.get_mask_key = fixed_key(RFC_KEY)
    assert pong.format() == bytes.fromhex("8a8537fa213d7f9f4d5158")


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (256, "827e0100"),  # §5.7: 256 bytes, 16-bit length
        (65536, "827f0000000000010000"),  # §5.7: 64 KiB, 64-bit length
        (125, "827d"),  # §5.2: the largest 7-bit length
        (126, "827e007e"),  # the smallest 16-bit length
        (65535, "827effff"),  # the largest 16-bit length
    ],
)
def test_binary_length_encodings_rfc6455_5_2_and_5_7(size: int, header: str) -> None:
    data = os.urandom(size)
    assert ABNF(1, 0, 0, 0, ABNF.OPCODE_BINARY, 0, data).format() == bytes.fromhex(header) + data


def test_length_thresholds_match_the_encodings() -> None:
    assert (ABNF.LENGTH_7, ABNF.LENGTH_16, ABNF.LENGTH_63) == (126, 65536, 2**63)


# ------------------------------------------------ against the test server's encoder


@pytest.mark.parametrize("opcode", list(Opcode))
@pytest.mark.parametrize("size", [0, 5, 126, 65536])
@pytest.mark.parametrize("bits", [(1, 0, 0, 0), (0, 0, 0, 0), (1, 1, 0, 0), (1, 0, 1, 1)])
def test_format_equals_the_test_servers_encoder(
    opcode: Opcode, size: int, bits: tuple[int, int, int, int]
) -> None:
    fin, rsv1, rsv2, rsv3 = bits
    data = os.urandom(size)
    frame = ABNF(fin, rsv1, rsv2, rsv3, opcode, 1, data)
    frame.get_mask_key = fixed_key(b"\x01\x80\xfe\x7f")
    expected = wsserver.encode_frame(
        opcode,
        data,
        fin=bool(fin),
        rsv1=bool(rsv1),
        rsv2=bool(rsv2),
        rsv3=bool(rsv3),
        mask=b"\x01\x80\xfe\x7f",
    )
    assert frame.format() == expected
    frame.mask_value = 0
    assert frame.format() == wsserver.encode_frame(
        opcode, data, fin=bool(fin), rsv1=bool(rsv1), rsv2=bool(rsv2), rsv3=bool(rsv3)
    )


# ---------------------------------------------------- real socket: the server's parser


def _raw_upgrade(server: WSServer) -> socket.socket:
    """A TCP socket to ``server`` past a minimal RFC 6455 §4.1 upgrade."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5.0)
    sock.sendall(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, f"server closed during the upgrade: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


def test_frames_reach_the_test_servers_parser_unmasked(ws_server: WSServerFactory) -> None:
    sent = [
        ABNF.create_frame("héllo", ABNF.OPCODE_TEXT, fin=0),
        ABNF.create_frame(b"\x00" * 70000, ABNF.OPCODE_CONT),
        ABNF.create_frame(b"are you there", ABNF.OPCODE_PING),
        ABNF.create_frame(bytes(range(256)) * 2, ABNF.OPCODE_BINARY),
        ABNF.create_frame(b"\x03\xe8bye", ABNF.OPCODE_CLOSE),
    ]
    received: list[wsserver.Frame] = []

    def handler(conn: ServerConnection) -> None:
        received.extend(conn.recv_frame() for _ in sent)

    server = ws_server(handler)
    with _raw_upgrade(server) as sock:
        sock.sendall(b"".join(frame.format() for frame in sent))
        assert sock.recv(1) == b""  # the handler returned: the server closed TCP
    assert [(f.opcode, f.payload, f.fin) for f in received] == [
        (f.opcode, f.data, bool(f.fin)) for f in sent
    ]
    assert all(f.masked and f.minimal_length for f in received)
    assert len({f.mask_key for f in received}) == len(sent)  # a fresh key per frame


# ------------------------------------------------------------------ masking


def test_mask_is_the_static_xor_on_the_class_rfc6455_5_3() -> None:
    masked = ABNF.mask(RFC_KEY, b"Hello")
    assert masked == bytes.fromhex("7f9f4d5158")
    assert ABNF.mask(RFC_KEY, masked) == b"Hello"  # masking is its own inverse
    assert ABNF.mask(RFC_KEY, None) == b""
    # a str key or str data is a byte string (latin-1), as in websocket-client
    assert ABNF.mask("\x37\xfa\x21\x3d", "Hello") == masked
    assert ABNF.mask("\x00\x00\x00\x00", "\xe9") == b"\xe9"


def test_mask_refuses_a_key_that_is_not_4_bytes() -> None:
    with pytest.raises(WebSocketConfigurationException, match="4 bytes"):
        ABNF.mask(b"abc", b"data")


def test_mask_on_an_instance_is_the_mask_bit() -> None:
    frame = ABNF(1, 0, 0, 0, ABNF.OPCODE_TEXT, 1, b"x")
    assert frame.mask == 1
    frame.mask = 0
    assert frame.mask_value == 0 and frame.mask == 0
    assert frame.format() == b"\x81\x01x"
    frame.mask_value = 1
    assert frame.mask == 1
    assert type(frame).mask(b"\x00\x00\x00\x01", b"abcd") == b"abce"


def test_mask_keyword_is_an_alias_of_mask_value() -> None:
    assert ABNF(1, opcode=ABNF.OPCODE_TEXT, mask=0, data=b"x").mask_value == 0
    assert ABNF(1, opcode=ABNF.OPCODE_TEXT, mask=1).mask_value == 1
    assert ABNF(mask_value=0).mask_value == 0
    with pytest.raises(TypeError, match="mask"):
        ABNF(1, 0, 0, 0, ABNF.OPCODE_TEXT, 1, b"x", mask=0)


def test_get_mask_key_override_is_called_with_4() -> None:
    calls: list[int] = []

    def get_key(n: int) -> bytes:
        calls.append(n)
        return RFC_KEY

    frame = ABNF.create_frame("Hello", ABNF.OPCODE_TEXT)
    frame.get_mask_key = get_key
    assert frame.format() == bytes.fromhex("818537fa213d7f9f4d5158")
    assert calls == [4]
    frame.mask_value = 0
    frame.format()
    assert calls == [4]  # an unmasked frame needs no key


def test_get_mask_key_may_return_a_latin_1_str() -> None:
    frame = ABNF.create_frame(b"Hello", ABNF.OPCODE_BINARY)
    frame.get_mask_key = fixed_key("\x37\xfa\x21\x3d")
    assert frame.format() == bytes.fromhex("828537fa213d7f9f4d5158")


@pytest.mark.parametrize("key", [b"abc", b"abcde", b"", "abc", "\u20acabc"])
def test_get_mask_key_of_the_wrong_size_is_refused(key: bytes | str) -> None:
    frame = ABNF.create_frame(b"Hello", ABNF.OPCODE_BINARY)
    frame.get_mask_key = fixed_key(key)
    with pytest.raises(WebSocketConfigurationException, match=r"os\.urandom\(4\)"):
        frame.format()


def test_get_mask_key_returning_no_bytes_is_refused() -> None:
    frame = ABNF.create_frame(b"Hello", ABNF.OPCODE_BINARY)
    bad: Any = lambda n: 1234  # noqa: E731 -- a misbehaving user function
    frame.get_mask_key = bad
    with pytest.raises(WebSocketConfigurationException, match="int"):
        frame.format()


def test_default_mask_keys_are_random_and_unmask_to_the_data() -> None:
    frame = ABNF.create_frame("Hello", ABNF.OPCODE_TEXT)
    assert frame.get_mask_key is os.urandom
    first, second = frame.format(), frame.format()
    b0, length, key1, payload = unmask_frame(first)
    assert (b0, length, payload) == (0x81, 5, b"Hello")
    assert unmask_frame(second)[2] != key1  # a fresh key each time (2**-32 to collide)


# ---------------------------------------------------------------- create_frame


def test_create_frame_encodes_str_text_as_utf_8() -> None:
    frame = ABNF.create_frame("h\u00e9", ABNF.OPCODE_TEXT)
    assert frame.data == b"h\xc3\xa9"
    assert (frame.fin, frame.rsv1, frame.rsv2, frame.rsv3) == (1, 0, 0, 0)
    assert (frame.opcode, frame.mask_value) == (ABNF.OPCODE_TEXT, 1)
    assert ABNF.create_frame("x", ABNF.OPCODE_TEXT, fin=0).fin == 0


def test_create_frame_keeps_other_data_as_given() -> None:
    data = b"\x00\xff"
    assert ABNF.create_frame(data, ABNF.OPCODE_BINARY).data is data
    # a str outside a text frame stays a str (websocket-client); format() sends UTF-8
    frame = ABNF.create_frame("h\u00e9", ABNF.OPCODE_BINARY)
    assert frame.data == "h\u00e9"
    frame.mask_value = 0
    assert frame.format() == b"\x82\x03h\xc3\xa9"
    assert frame.data == "h\u00e9"  # format() does not change the frame


def test_constructor_defaults() -> None:
    frame = ABNF()
    assert (frame.fin, frame.rsv1, frame.rsv2, frame.rsv3) == (0, 0, 0, 0)
    assert (frame.opcode, frame.mask_value, frame.data) == (ABNF.OPCODE_TEXT, 1, "")
    assert ABNF(data=None).data == ""


def test_received_frame_view() -> None:
    frame = ABNF.received_frame(Opcode.TEXT, b"hi", False)
    assert (frame.fin, frame.rsv1, frame.rsv2, frame.rsv3) == (0, 0, 0, 0)
    assert (frame.opcode, frame.mask_value, frame.data) == (1, 0, b"hi")
    assert type(frame.opcode) is int
    assert ABNF.received_frame(Opcode.CLOSE, b"\x03\xe8").fin == 1
    frame.validate()


def test_memoryview_data_is_sent_by_its_size_in_bytes() -> None:
    wide = memoryview(array.array("H", [1, 2]))  # 2 items, 4 bytes
    frame = ABNF(1, 0, 0, 0, ABNF.OPCODE_BINARY, 0, wide)
    assert frame.format() == b"\x82\x04" + wide.tobytes()
    sliced = memoryview(b"abcdef")[1:4]
    assert ABNF(1, 0, 0, 0, ABNF.OPCODE_BINARY, 0, sliced).format() == b"\x82\x03bcd"


# ------------------------------------------------------------------- format errors


@pytest.mark.parametrize(
    "bits",
    [(2, 0, 0, 0), (1, 2, 0, 0), (1, 0, -1, 0), (1, 0, 0, 3)],
    ids=["fin", "rsv1", "rsv2", "rsv3"],
)
def test_format_refuses_header_bits_other_than_0_or_1(bits: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError, match="0 or 1"):
        ABNF(*bits, ABNF.OPCODE_TEXT, 1, b"x").format()
    with pytest.raises(ValueError, match="mask_value"):
        ABNF(1, 0, 0, 0, ABNF.OPCODE_TEXT, 2, b"x").format()


@pytest.mark.parametrize("opcode", [0x3, 0x7, 0xB, 0xF, 16])
def test_format_refuses_reserved_opcodes_rfc6455_5_2(opcode: int) -> None:
    with pytest.raises(ValueError, match="reserved"):
        ABNF(1, 0, 0, 0, opcode, 1, b"x").format()


def test_format_refuses_data_that_is_not_bytes_or_str() -> None:
    bad: Any = 12
    with pytest.raises(TypeError, match="int"):
        ABNF(1, 0, 0, 0, ABNF.OPCODE_BINARY, 0, bad).format()


# ------------------------------------------------------------------------ validate


def test_validate_accepts_valid_frames() -> None:
    valid = [
        ABNF(0, 0, 0, 0, ABNF.OPCODE_TEXT, 1, b"\xff"),  # text UTF-8 is not validate()'s job
        ABNF(1, 0, 0, 0, ABNF.OPCODE_CONT, 1, b"x" * 70000),
        ABNF(1, 0, 0, 0, ABNF.OPCODE_PING, 1, b"x" * 125),
        ABNF(1, 0, 0, 0, ABNF.OPCODE_PONG, 1, b""),
        ABNF(1, 0, 0, 0, ABNF.OPCODE_CLOSE, 1, b""),
        ABNF(1, 0, 0, 0, ABNF.OPCODE_CLOSE, 1, b"\x03\xe8"),
        ABNF(1, 0, 0, 0, ABNF.OPCODE_CLOSE, 1, b"\x0b\xb8" + "é".encode() * 61),
        ABNF(1, 0, 0, 0, ABNF.OPCODE_CLOSE, 1, b"\x13\x87bye"),  # 4999
        ABNF(1, 0, 0, 0, ABNF.OPCODE_CLOSE, 1, "\x0fAok"),  # str: its UTF-8 (code 3905)
    ]
    for frame in valid:
        frame.validate()  # raises for an invalid frame


def _validate_error(frame: ABNF, skip_utf8_validation: bool = False) -> WebSocketProtocolException:
    with pytest.raises(WebSocketProtocolException) as info:
        frame.validate(skip_utf8_validation)
    # websocket-client raises this very class for every bad frame
    assert type(info.value) is WebSocketProtocolException
    return info.value


@pytest.mark.parametrize("rsv", [(1, 0, 0), (0, 1, 0), (0, 0, 1)])
def test_validate_refuses_rsv_bits_rfc6455_5_2(rsv: tuple[int, int, int]) -> None:
    error = _validate_error(ABNF(1, *rsv, ABNF.OPCODE_TEXT, 1, b"x"))
    assert "RSV" in str(error)


@pytest.mark.parametrize("opcode", [0x3, 0x7, 0xB, 0xF])
def test_validate_refuses_reserved_opcodes_rfc6455_5_2(opcode: int) -> None:
    assert f"opcode {opcode}" in str(_validate_error(ABNF(1, 0, 0, 0, opcode, 1, b"")))


@pytest.mark.parametrize("opcode", [Opcode.CLOSE, Opcode.PING, Opcode.PONG])
def test_validate_refuses_fragmented_control_frames_rfc6455_5_5(opcode: Opcode) -> None:
    assert "fragmented" in str(_validate_error(ABNF(0, 0, 0, 0, opcode, 1, b"")))


@pytest.mark.parametrize("opcode", [Opcode.CLOSE, Opcode.PING, Opcode.PONG])
def test_validate_refuses_control_payloads_over_125_rfc6455_5_5(opcode: Opcode) -> None:
    data = b"\x03\xe8" + b"x" * 124  # 126 bytes; a valid close payload but for its size
    assert "126 bytes" in str(_validate_error(ABNF(1, 0, 0, 0, opcode, 1, data)))


@pytest.mark.parametrize(
    "payload",
    [
        b"\x03",  # 1 byte: a code needs 2 (§5.5.1)
        b"\x03\xe7",  # 999
        b"\x03\xec",  # 1004 reserved
        b"\x03\xed",  # 1005: local only (§7.4.1)
        b"\x03\xee",  # 1006: local only
        b"\x03\xf7",  # 1015: local only
        b"\x0b\xb7",  # 2999: unassigned
        b"\x13\x88",  # 5000: out of range
        b"\x01\x8a\xaa\xff\xdd",  # 394
    ],
)
def test_validate_refuses_bad_close_payloads_rfc6455_7_4(payload: bytes) -> None:
    frame = ABNF(1, 0, 0, 0, ABNF.OPCODE_CLOSE, 1, payload)
    error = _validate_error(frame)
    assert error.close_code == CloseCode.PROTOCOL_ERROR
    assert isinstance(error.__cause__, WebSocketProtocolException)
    # skipping UTF-8 checks does not skip the code checks
    _validate_error(frame, skip_utf8_validation=True)


def test_validate_refuses_a_close_reason_that_is_not_utf_8_rfc6455_5_5_1() -> None:
    frame = ABNF(1, 0, 0, 0, ABNF.OPCODE_CLOSE, 1, b"\x03\xe8\xff\xfe")
    error = _validate_error(frame)
    assert "UTF-8" in str(error)
    assert error.close_code == CloseCode.INVALID_FRAME_PAYLOAD_DATA
    assert isinstance(error.__cause__, WebSocketPayloadException)
    frame.validate(skip_utf8_validation=True)  # the code is fine: no error


# ----------------------------------------------------------------------- str / repr


def test_str_shows_fin_opcode_and_data() -> None:
    assert str(ABNF(1, 0, 0, 0, ABNF.OPCODE_TEXT, 1, "Hello")) == "fin=1 opcode=1 data=Hello"
    assert str(ABNF(0, 0, 0, 0, ABNF.OPCODE_BINARY, 1, b"Hi")) == "fin=0 opcode=2 data=b'Hi'"


def test_str_and_repr_of_large_frames_are_bounded() -> None:
    for data in (b"x" * 100_000, "y" * 100_000):
        frame = ABNF(1, 0, 0, 0, ABNF.OPCODE_BINARY, 1, data)
        assert len(str(frame)) < 120 and "100000 total" in str(frame)
        assert len(repr(frame)) < 200 and repr(frame).startswith("ABNF(fin=1, rsv1=0")


# ----------------------------------------------------------------------- constants


def test_opcode_constants() -> None:
    assert (
        ABNF.OPCODE_CONT,
        ABNF.OPCODE_TEXT,
        ABNF.OPCODE_BINARY,
        ABNF.OPCODE_CLOSE,
        ABNF.OPCODE_PING,
        ABNF.OPCODE_PONG,
    ) == (0x0, 0x1, 0x2, 0x8, 0x9, 0xA)
    assert ABNF.OPCODES == (0x0, 0x1, 0x2, 0x8, 0x9, 0xA)
    assert ABNF.OPCODE_MAP == {
        0x0: "cont",
        0x1: "text",
        0x2: "binary",
        0x8: "close",
        0x9: "ping",
        0xA: "pong",
    }


def test_status_constants_are_the_close_codes() -> None:
    expected = {
        STATUS_NORMAL: (1000, CloseCode.NORMAL_CLOSURE),
        STATUS_GOING_AWAY: (1001, CloseCode.GOING_AWAY),
        STATUS_PROTOCOL_ERROR: (1002, CloseCode.PROTOCOL_ERROR),
        STATUS_UNSUPPORTED_DATA_TYPE: (1003, CloseCode.UNSUPPORTED_DATA),
        STATUS_STATUS_NOT_AVAILABLE: (1005, CloseCode.NO_STATUS_RCVD),
        STATUS_ABNORMAL_CLOSED: (1006, CloseCode.ABNORMAL_CLOSURE),
        STATUS_INVALID_PAYLOAD: (1007, CloseCode.INVALID_FRAME_PAYLOAD_DATA),
        STATUS_POLICY_VIOLATION: (1008, CloseCode.POLICY_VIOLATION),
        STATUS_MESSAGE_TOO_BIG: (1009, CloseCode.MESSAGE_TOO_BIG),
        STATUS_INVALID_EXTENSION: (1010, CloseCode.MANDATORY_EXTENSION),
        STATUS_UNEXPECTED_CONDITION: (1011, CloseCode.INTERNAL_ERROR),
        STATUS_SERVICE_RESTART: (1012, CloseCode.SERVICE_RESTART),
        STATUS_TRY_AGAIN_LATER: (1013, CloseCode.TRY_AGAIN_LATER),
        STATUS_BAD_GATEWAY: (1014, CloseCode.BAD_GATEWAY),
        STATUS_TLS_HANDSHAKE_ERROR: (1015, CloseCode.TLS_HANDSHAKE),
    }
    assert len(expected) == 15
    for constant, (number, member) in expected.items():
        assert constant == number and constant is member


def test_valid_close_status_lists_the_codes_a_peer_may_send_rfc6455_7_4_1() -> None:
    assert VALID_CLOSE_STATUS == (
        1000,
        1001,
        1002,
        1003,
        1007,
        1008,
        1009,
        1010,
        1011,
        1012,
        1013,
        1014,
    )


def test_all_names_exist() -> None:
    import wspool.abnf

    assert sorted(wspool.abnf.__all__) == sorted(
        ["ABNF", "VALID_CLOSE_STATUS"]
        + [name for name in dir(wspool.abnf) if name.startswith("STATUS_")]
    )
    for name in wspool.abnf.__all__:
        assert hasattr(wspool.abnf, name)
