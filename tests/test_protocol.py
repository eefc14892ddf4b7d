"""Sans-I/O tests of the client protocol core: feed bytes, assert events.

Server frames are built with the test server's own unvalidated encoder
(``wsserver.encode_frame``), an implementation independent of wspool's.
"""

from __future__ import annotations

import os
import random
import struct
import threading
import zlib

import pytest
from helpers import run_python
from wsserver import encode_frame as server_frame

from wspool.exceptions import (
    WebSocketConfigurationException,
    WebSocketConnectionClosedException,
    WebSocketMessageTooBigException,
    WebSocketPayloadException,
    WebSocketProtocolException,
)
from wspool.protocol import (
    ClientProtocol,
    CloseReceived,
    DeflateOptions,
    EndOfStream,
    Fragment,
    Message,
    Ping,
    Pong,
    ProtocolError,
    ProtocolState,
)

TEXT, BINARY, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10


def parse_client_frames(data: bytes) -> list[tuple[int, bool, bool, bytes, bytes]]:
    """Decode frames the client sent: (opcode, fin, rsv1, mask key, unmasked payload)."""
    frames = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        assert b1 & 0x80, "client frames must be masked (RFC 6455 §5.3)"
        n = b1 & 0x7F
        pos += 2
        if n == 126:
            (n,) = struct.unpack_from("!H", data, pos)
            assert n >= 126
            pos += 2
        elif n == 127:
            (n,) = struct.unpack_from("!Q", data, pos)
            assert n >= 0x10000
            pos += 8
        key = data[pos : pos + 4]
        pos += 4
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(data[pos : pos + n]))
        pos += n
        frames.append((b0 & 0x0F, bool(b0 & 0x80), bool(b0 & 0x40), key, payload))
    return frames


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def feed(proto: ClientProtocol, data: bytes) -> list[object]:
    return list(proto.receive_data(data))


def assert_fails(proto: ClientProtocol, data: bytes, code: int, exc_type: type) -> None:
    """The stream must end in a ProtocolError and a queued close frame with ``code``."""
    events = feed(proto, data)
    assert events, "expected a ProtocolError event"
    last = events[-1]
    assert isinstance(last, ProtocolError), events
    assert type(last.exc) is exc_type
    assert last.exc.close_code == code
    assert str(last.exc)
    sent = parse_client_frames(proto.data_to_send())
    assert sent[-1][0] == CLOSE
    assert int.from_bytes(sent[-1][4][:2], "big") == code
    assert proto.state is ProtocolState.CLOSING
    # RFC 6455 §7.1.7: after failing, nothing more is processed.
    assert feed(proto, server_frame(TEXT, b"ignored")) == []


# ----------------------------------------------------------------- RFC 6455 §5.2


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_length_encodings_5_2(size: int) -> None:
    payload = bytes(random.Random(size).getrandbits(8) for _ in range(size))
    proto = ClientProtocol()
    assert feed(proto, server_frame(BINARY, payload)) == [Message(BINARY, payload)]


def test_non_minimal_16_bit_length_rejected_5_2() -> None:
    assert_fails(
        ClientProtocol(),
        server_frame(BINARY, b"x" * 10, length_bytes=2),
        1002,
        WebSocketProtocolException,
    )


def test_non_minimal_64_bit_length_rejected_5_2() -> None:
    assert_fails(
        ClientProtocol(),
        server_frame(BINARY, b"x" * 200, length_bytes=8),
        1002,
        WebSocketProtocolException,
    )


def test_64_bit_length_with_msb_set_rejected_5_2() -> None:
    header = bytes((0x82, 127)) + (1 << 63 | 70000).to_bytes(8, "big")
    assert_fails(ClientProtocol(max_size=None), header, 1002, WebSocketProtocolException)


def test_masked_server_frame_rejected_5_1() -> None:
    assert_fails(
        ClientProtocol(), server_frame(TEXT, b"hi", mask=True), 1002, WebSocketProtocolException
    )


_GOOD_RUN = b"".join(server_frame(op, b"m%d" % i * 50) for i, op in enumerate([TEXT, BINARY] * 3))


@pytest.mark.parametrize(
    ("bad", "code", "exc_type"),
    [
        (server_frame(TEXT, b"hi", mask=True), 1002, WebSocketProtocolException),  # §5.1
        (server_frame(TEXT, b"x" * 10, length_bytes=2), 1002, WebSocketProtocolException),
        (server_frame(TEXT, b"\xff\xfe"), 1007, WebSocketPayloadException),  # §8.1
        (server_frame(TEXT, b"hi", rsv2=True), 1002, WebSocketProtocolException),  # §5.2
        (server_frame(0x3, b"hi"), 1002, WebSocketProtocolException),  # reserved opcode
        (server_frame(BINARY, b"y" * 200), 1009, WebSocketMessageTooBigException),
    ],
    ids=["masked", "non-minimal-16", "bad-utf8", "rsv2", "opcode-3", "too-big"],
)
def test_a_violation_after_a_run_of_whole_frames_keeps_the_messages_before_it(
    bad: bytes, code: int, exc_type: type
) -> None:
    # The parser's hot loop takes runs of whole frames; whatever it cannot take (every
    # violation included) must reach the general checks, after the good messages.
    proto = ClientProtocol(max_size=150)
    events = feed(proto, _GOOD_RUN + bad + server_frame(TEXT, b"after"))
    messages = [e for e in events if isinstance(e, Message)]
    assert [m.data for m in messages] == [
        f"m{i}" * 50 if i % 2 == 0 else b"m%d" % i * 50 for i in range(6)
    ]
    last = events[-1]
    assert isinstance(last, ProtocolError) and type(last.exc) is exc_type
    assert last.exc.close_code == code


@pytest.mark.parametrize("rsv", [{"rsv1": True}, {"rsv2": True}, {"rsv3": True}])
def test_rsv_bits_without_extension_rejected_5_2(rsv: dict[str, bool]) -> None:
    assert_fails(
        ClientProtocol(), server_frame(TEXT, b"hi", **rsv), 1002, WebSocketProtocolException
    )


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes_rejected_5_2(opcode: int) -> None:
    assert_fails(ClientProtocol(), server_frame(opcode, b""), 1002, WebSocketProtocolException)


# ----------------------------------------------------------------- RFC 6455 §5.5


def test_control_frame_over_125_bytes_fails_before_payload_arrives_5_5() -> None:
    header = server_frame(PING, b"x" * 126)[:4]  # the payload never comes
    assert_fails(ClientProtocol(), header, 1002, WebSocketProtocolException)


def test_fragmented_control_frame_rejected_5_5() -> None:
    assert_fails(
        ClientProtocol(), server_frame(PING, b"p", fin=False), 1002, WebSocketProtocolException
    )


def test_ping_is_answered_with_pong_carrying_same_payload_5_5_2() -> None:
    proto = ClientProtocol()
    assert feed(proto, server_frame(PING, b"are you there")) == [Ping(b"are you there")]
    [(opcode, fin, _, _, payload)] = parse_client_frames(proto.data_to_send())
    assert (opcode, fin, payload) == (PONG, True, b"are you there")
    assert proto.data_to_send() == b""


def test_auto_pong_can_be_turned_off() -> None:
    proto = ClientProtocol(auto_pong=False)
    assert feed(proto, server_frame(PING, b"x")) == [Ping(b"x")]
    assert proto.data_to_send() == b""


def test_pong_event_5_5_3() -> None:
    proto = ClientProtocol()
    assert feed(proto, server_frame(PONG, b"rtt")) == [Pong(b"rtt")]
    assert proto.data_to_send() == b""


# ----------------------------------------------------------------- RFC 6455 §5.4


def test_fragmented_text_message_5_4() -> None:
    proto = ClientProtocol()
    stream = (
        server_frame(TEXT, "héllo ".encode(), fin=False)
        + server_frame(CONT, b"wor", fin=False)
        + server_frame(CONT, b"ld", fin=True)
    )
    assert feed(proto, stream) == [Message(TEXT, "héllo world")]


def test_control_frames_interleaved_in_fragmented_message_5_4() -> None:
    proto = ClientProtocol()
    stream = (
        server_frame(BINARY, b"ab", fin=False)
        + server_frame(PING, b"1")
        + server_frame(CONT, b"cd", fin=False)
        + server_frame(PONG, b"2")
        + server_frame(CONT, b"ef", fin=True)
    )
    assert feed(proto, stream) == [Ping(b"1"), Pong(b"2"), Message(BINARY, b"abcdef")]


def test_continuation_without_start_rejected_5_4() -> None:
    assert_fails(ClientProtocol(), server_frame(CONT, b"x"), 1002, WebSocketProtocolException)


@pytest.mark.parametrize("fin", [True, False])
def test_new_message_inside_fragmented_message_rejected_5_4(fin: bool) -> None:
    proto = ClientProtocol()
    assert feed(proto, server_frame(TEXT, b"a", fin=False)) == []
    assert_fails(proto, server_frame(TEXT, b"b", fin=fin), 1002, WebSocketProtocolException)


def test_frame_events_deliver_each_fragment() -> None:
    proto = ClientProtocol(frame_events=True)
    stream = server_frame(TEXT, b"ab", fin=False) + server_frame(CONT, b"cd", fin=True)
    assert feed(proto, stream) == [Fragment(TEXT, b"ab", False), Fragment(CONT, b"cd", True)]


def test_frame_events_cannot_toggle_mid_message() -> None:
    proto = ClientProtocol()
    feed(proto, server_frame(TEXT, b"ab", fin=False))
    with pytest.raises(WebSocketConfigurationException):
        proto.frame_events = True


# ------------------------------------------------------------ UTF-8 (§5.6, §8.1)


def test_invalid_utf8_text_fails_with_1007_8_1() -> None:
    assert_fails(
        ClientProtocol(), server_frame(TEXT, b"\xce\xba\xff"), 1007, WebSocketPayloadException
    )


def test_invalid_utf8_fails_fast_in_first_fragment_8_1() -> None:
    # Autobahn 6.4.x: the invalid byte is in the first fragment, the rest never comes.
    proto = ClientProtocol()
    assert_fails(
        proto,
        server_frame(TEXT, "κόσμε".encode() + b"\xf4\x90\x80\x80", fin=False),
        1007,
        WebSocketPayloadException,
    )


def test_truncated_utf8_at_message_end_fails_8_1() -> None:
    proto = ClientProtocol()
    feed(proto, server_frame(TEXT, b"ok \xe2\x82", fin=False))
    assert_fails(proto, server_frame(CONT, b"", fin=True), 1007, WebSocketPayloadException)


def test_utf8_split_at_every_byte_position_is_valid() -> None:
    text = "a€𝄞é日本語"
    raw = text.encode()
    for cut in range(len(raw) + 1):
        proto = ClientProtocol()
        stream = server_frame(TEXT, raw[:cut], fin=False) + server_frame(CONT, raw[cut:])
        assert feed(proto, stream) == [Message(TEXT, text)], cut


def test_skip_utf8_validation_delivers_undecodable_text() -> None:
    proto = ClientProtocol(skip_utf8_validation=True)
    [message] = feed(proto, server_frame(TEXT, b"ok\xff"))
    assert isinstance(message, Message)
    assert isinstance(message.data, str)
    assert message.data.encode("utf-8", "surrogateescape") == b"ok\xff"


# -------------------------------------------------------------- close (§5.5.1, §7)


def test_server_close_is_echoed_and_closes_5_5_1() -> None:
    proto = ClientProtocol()
    events = feed(proto, server_frame(CLOSE, close_payload(1001, b"bye")))
    assert events == [CloseReceived(1001, "bye", close_payload(1001, b"bye"))]
    [(opcode, _, _, _, payload)] = parse_client_frames(proto.data_to_send())
    assert (opcode, payload) == (CLOSE, close_payload(1001))
    assert proto.state is ProtocolState.CLOSED
    assert (proto.close_code, proto.close_reason) == (1001, "bye")
    with pytest.raises(WebSocketConnectionClosedException, match="already closed"):
        proto.send_message("late")
    assert feed(proto, b"") == [EndOfStream(clean=True)]


def test_empty_close_payload_means_1005_and_is_answered_empty_7_1_5() -> None:
    proto = ClientProtocol()
    assert feed(proto, server_frame(CLOSE, b"")) == [CloseReceived(1005, "", b"")]
    [(opcode, _, _, _, payload)] = parse_client_frames(proto.data_to_send())
    assert (opcode, payload) == (CLOSE, b"")


def test_client_initiated_close_handshake_7_1_2() -> None:
    proto = ClientProtocol()
    [(opcode, _, _, _, payload)] = parse_client_frames(proto.send_close(1000, "done"))
    assert (opcode, payload) == (CLOSE, close_payload(1000, b"done"))
    assert proto.state is ProtocolState.CLOSING
    assert proto.send_close() == b""  # idempotent
    # Data may still arrive before the server's close frame.
    events = feed(proto, server_frame(TEXT, b"late") + server_frame(CLOSE, close_payload(1000)))
    assert events == [Message(TEXT, "late"), CloseReceived(1000, "", close_payload(1000))]
    assert proto.data_to_send() == b""  # no second close frame
    assert proto.state is ProtocolState.CLOSED


def test_frames_after_close_frame_are_ignored_5_5_1() -> None:
    proto = ClientProtocol()
    events = feed(proto, server_frame(CLOSE, close_payload(1000)) + server_frame(TEXT, b"x"))
    assert len(events) == 1


def test_one_byte_close_payload_rejected_5_5_1() -> None:
    assert_fails(ClientProtocol(), server_frame(CLOSE, b"\x03"), 1002, WebSocketProtocolException)


@pytest.mark.parametrize(
    "code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
)
def test_invalid_close_codes_rejected_7_4(code: int) -> None:
    assert_fails(
        ClientProtocol(), server_frame(CLOSE, close_payload(code)), 1002, WebSocketProtocolException
    )


@pytest.mark.parametrize(
    "code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
)
def test_valid_close_codes_accepted_7_4(code: int) -> None:
    proto = ClientProtocol()
    assert feed(proto, server_frame(CLOSE, close_payload(code))) == [
        CloseReceived(code, "", close_payload(code))
    ]


def test_close_reason_with_bad_utf8_fails_1007() -> None:
    assert_fails(
        ClientProtocol(),
        server_frame(CLOSE, close_payload(1000, b"\xce\xba\xed\xa0\x80")),
        1007,
        WebSocketPayloadException,
    )


def test_eof_without_close_is_abnormal_7_1_5() -> None:
    proto = ClientProtocol()
    feed(proto, server_frame(TEXT, b"partial")[:4])
    assert feed(proto, b"") == [EndOfStream(clean=False)]
    assert proto.close_code == 1006
    assert proto.state is ProtocolState.CLOSED


# ------------------------------------------------------------------- size limits


def test_frame_over_max_size_fails_from_header_1009() -> None:
    header = server_frame(BINARY, b"x" * 2000)[:4]
    assert_fails(ClientProtocol(max_size=1000), header, 1009, WebSocketMessageTooBigException)


def test_fragmented_message_over_max_size_fails_1009() -> None:
    proto = ClientProtocol(max_size=1000)
    feed(proto, server_frame(BINARY, b"x" * 600, fin=False))
    assert_fails(
        proto, server_frame(CONT, b"x" * 600, fin=False), 1009, WebSocketMessageTooBigException
    )


def test_max_size_none_lifts_the_limit() -> None:
    proto = ClientProtocol(max_size=None)
    big = b"\x00" * (17 * 1024 * 1024)
    [message] = feed(proto, server_frame(BINARY, big))
    assert isinstance(message, Message) and len(message.data) == len(big)


def test_negative_max_size_is_a_configuration_error() -> None:
    with pytest.raises(WebSocketConfigurationException, match="max_size"):
        ClientProtocol(max_size=-1)


# -------------------------------------------------------------- stream splitting


def _valid_stream() -> tuple[bytes, list[object]]:
    rng = random.Random(6455)
    stream = b""
    expected: list[object] = []
    for i in range(60):
        kind = i % 5
        if kind == 0:
            text = "".join(rng.choice("aé€𝄞 ") for _ in range(rng.randrange(300)))
            stream += server_frame(TEXT, text.encode())
            expected.append(Message(TEXT, text))
        elif kind == 1:
            data = rng.randbytes(rng.choice([0, 5, 125, 126, 1000, 70000]))
            stream += server_frame(BINARY, data)
            expected.append(Message(BINARY, data))
        elif kind == 2:
            stream += server_frame(PING, b"p%d" % i)
            expected.append(Ping(b"p%d" % i))
        elif kind == 3:
            text = "fragmented €" * rng.randrange(1, 50)
            raw = text.encode()
            cut = rng.randrange(len(raw))
            stream += server_frame(TEXT, raw[:cut], fin=False) + server_frame(PONG, b"x")
            stream += server_frame(CONT, raw[cut:])
            expected += [Pong(b"x"), Message(TEXT, text)]
        else:
            stream += server_frame(BINARY, b"", fin=False) + server_frame(CONT, b"z", fin=True)
            expected.append(Message(BINARY, b"z"))
    return stream, expected


@pytest.mark.parametrize("max_chunk", [1, 7, 100, 4096, 65536])
def test_random_splits_give_the_same_events(max_chunk: int) -> None:
    stream, expected = _valid_stream()
    rng = random.Random(max_chunk)
    proto = ClientProtocol()
    events: list[object] = []
    pos = 0
    while pos < len(stream):
        step = rng.randint(1, max_chunk)
        events += feed(proto, stream[pos : pos + step])
        pos += step
    assert events == expected


def test_random_garbage_only_raises_wspool_errors() -> None:
    rng = random.Random(1)
    for _ in range(300):
        proto = ClientProtocol(max_size=1 << 16)
        garbage = rng.randbytes(rng.randrange(1, 400))
        events = feed(proto, garbage)  # must not raise anything
        for event in events[:-1]:
            assert not isinstance(event, ProtocolError)
        if events and isinstance(events[-1], ProtocolError):
            assert isinstance(events[-1].exc, WebSocketProtocolException)
        assert feed(proto, b"")[-1] == EndOfStream(clean=False) or proto.state is not None


def test_events_before_an_error_are_kept() -> None:
    proto = ClientProtocol()
    events = feed(proto, server_frame(TEXT, b"one") + server_frame(7, b""))
    assert events[0] == Message(TEXT, "one")
    assert isinstance(events[1], ProtocolError)


# ----------------------------------------------------------------------- sending


def test_sent_frames_are_masked_with_fresh_keys_5_3() -> None:
    proto = ClientProtocol()
    keys = {parse_client_frames(proto.send_message("hello"))[0][3] for _ in range(50)}
    assert len(keys) > 45  # 32 random bits each: collisions are vanishingly rare


def test_mask_keys_are_never_handed_out_twice_across_threads_5_3() -> None:
    # Keys come from os.urandom in blocks; concurrent senders must each get their own.
    from wspool.protocol.frames import mask_key

    got: list[list[bytes]] = [[] for _ in range(8)]

    def take(out: list[bytes]) -> None:
        for _ in range(3000):  # several refills of the 1024-key block
            out.append(mask_key())

    threads = [threading.Thread(target=take, args=(out,)) for out in got]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    keys = [key for out in got for key in out]
    assert all(len(key) == 4 for key in keys)
    # 24,000 draws of 32 random bits: a repeat by chance has probability ~7 %, so
    # allow a couple; handing out the same pooled key twice would repeat thousands.
    assert len(keys) - len(set(keys)) <= 3


_FORK_CHECK = """
import os
from wspool.protocol.frames import mask_key

mask_key()  # the pool now holds keys the parent will use next
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write_end, b"".join(mask_key() for _ in range(100)))
    os._exit(0)
os.close(write_end)
child = b""
while chunk := os.read(read_end, 4096):
    child += chunk
os.waitpid(pid, 0)
parent = b"".join(mask_key() for _ in range(100))
assert len(child) == 400, len(child)
print("same" if child == parent else "different")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_reuse_the_parents_pooled_mask_keys_5_3() -> None:
    # In a fresh interpreter: forking the (multi-threaded) test process is unsafe.
    done = run_python(_FORK_CHECK, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "different"


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_send_lengths_and_payload_roundtrip(size: int) -> None:
    proto = ClientProtocol()
    data = random.Random(size).randbytes(size)
    [(opcode, fin, rsv1, _, payload)] = parse_client_frames(proto.send_message(data))
    assert (opcode, fin, rsv1, payload) == (BINARY, True, False, data)


def test_send_text_and_explicit_opcodes() -> None:
    proto = ClientProtocol()
    assert parse_client_frames(proto.send_message("é"))[0][0] == TEXT
    assert parse_client_frames(proto.send_message(b"x"))[0][0] == BINARY
    assert parse_client_frames(proto.send_message(b"x", TEXT))[0][0] == TEXT
    assert parse_client_frames(proto.send_message("x", BINARY))[0][0] == BINARY
    with pytest.raises(WebSocketConfigurationException, match="data opcode"):
        proto.send_message(b"x", PING)
    with pytest.raises(WebSocketConfigurationException, match="cannot send int"):
        proto.send_message(5)  # type: ignore[arg-type]


def test_send_with_fragment_size_5_4() -> None:
    proto = ClientProtocol()
    frames = parse_client_frames(proto.send_message(b"abcdefghij", fragment_size=4))
    assert [(f[0], f[1], f[4]) for f in frames] == [
        (BINARY, False, b"abcd"),
        (CONT, False, b"efgh"),
        (CONT, True, b"ij"),
    ]


def test_send_fragment_streaming_5_4() -> None:
    proto = ClientProtocol()
    out = proto.send_fragment("ab", fin=False)
    with pytest.raises(WebSocketConfigurationException, match="fragmented message"):
        proto.send_message("other")
    out += proto.send_ping(b"mid")  # control frames may interleave
    out += proto.send_fragment("cd", fin=True)
    frames = parse_client_frames(out)
    assert [(f[0], f[1], f[4]) for f in frames] == [
        (TEXT, False, b"ab"),
        (PING, True, b"mid"),
        (CONT, True, b"cd"),
    ]
    proto.send_message("next")  # the stream is finished


def test_control_payload_over_125_bytes_is_refused_5_5() -> None:
    proto = ClientProtocol()
    with pytest.raises(WebSocketConfigurationException, match="at most 125"):
        proto.send_ping(b"x" * 126)
    assert parse_client_frames(proto.send_pong(b"y" * 125))[0][4] == b"y" * 125


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 2000, 5000])
def test_unsendable_close_code_is_refused_7_4(code: int) -> None:
    with pytest.raises(WebSocketConfigurationException, match=str(code)):
        ClientProtocol().send_close(code)


def test_close_reason_over_123_bytes_is_refused_5_5_1() -> None:
    with pytest.raises(WebSocketConfigurationException, match="123"):
        ClientProtocol().send_close(1000, "é" * 62)


def test_send_after_close_raises_connection_closed() -> None:
    proto = ClientProtocol()
    proto.send_close()
    for send in (lambda: proto.send_message("x"), lambda: proto.send_ping()):
        with pytest.raises(WebSocketConnectionClosedException, match="already closed"):
            send()


# -------------------------------------------------------- permessage-deflate (7692)


def _server_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def _negotiated(max_size: int | None = 1 << 20, **params: str | None) -> ClientProtocol:
    deflate = DeflateOptions().accept(list(params.items()), max_size=max_size)
    return ClientProtocol(deflate=deflate, max_size=max_size)


def test_compressed_message_is_inflated_7692_7_2_2() -> None:
    proto = _negotiated()
    text = "compress me " * 100
    assert feed(proto, server_frame(TEXT, _server_deflate(text.encode()), rsv1=True)) == [
        Message(TEXT, text)
    ]


def test_compressed_fragmented_message_7692_7_2_2() -> None:
    proto = _negotiated()
    payload = _server_deflate(b"abc" * 1000)
    stream = server_frame(BINARY, payload[:10], fin=False, rsv1=True)
    stream += server_frame(CONT, payload[10:], fin=True)
    assert feed(proto, stream) == [Message(BINARY, b"abc" * 1000)]


def test_rsv1_on_continuation_rejected_7692_6_1() -> None:
    proto = _negotiated()
    feed(proto, server_frame(BINARY, b"", fin=False))
    assert_fails(proto, server_frame(CONT, b"", rsv1=True), 1002, WebSocketProtocolException)


def test_decompression_bomb_is_bounded_1009() -> None:
    proto = _negotiated(max_size=1 << 20)
    bomb = _server_deflate(b"\x00" * (50 << 20))
    assert_fails(
        proto, server_frame(BINARY, bomb, rsv1=True), 1009, WebSocketMessageTooBigException
    )


def test_sent_messages_are_compressed_when_large_enough() -> None:
    proto = _negotiated()
    data = b"abcd" * 1000
    [(opcode, _, rsv1, _, payload)] = parse_client_frames(proto.send_message(data))
    assert rsv1 and opcode == BINARY
    assert zlib.decompressobj(wbits=-15).decompress(payload + b"\x00\x00\xff\xff") == data


# ------------------------------------------------- streamed payloads, deferred failure


def test_invalid_utf8_fails_before_the_frame_is_complete_8_1() -> None:
    # Autobahn 6.4.3: one text frame arriving in pieces; the second piece is invalid.
    proto = ClientProtocol()
    frame = server_frame(TEXT, "κόσμε".encode() + b"\xf4\x90\x80\x80" + b"edited")
    assert feed(proto, frame[:13]) == []
    assert_fails(proto, frame[13:17], 1007, WebSocketPayloadException)


def test_large_frame_is_streamed_without_buffering_twice() -> None:
    proto = ClientProtocol()
    text = "€" * 100_000
    frame = server_frame(TEXT, text.encode())
    events: list[object] = []
    for i in range(0, len(frame), 4096):
        events += feed(proto, frame[i : i + 4096])
        if i + 4096 < len(frame):
            assert len(proto._buffer) < 10  # only a partial header is ever kept
    assert events == [Message(TEXT, text)]


def test_deferred_failure_lets_the_caller_answer_earlier_events_7_1_7() -> None:
    # Autobahn 3.2 / 4.1.3 / 5.15: the message before the bad frame must still be echoed.
    proto = ClientProtocol(defer_failure=True)
    events = feed(
        proto, server_frame(TEXT, b"Hello") + server_frame(5, b"") + server_frame(PING, b"")
    )
    assert events[0] == Message(TEXT, "Hello")
    assert isinstance(events[1], ProtocolError) and len(events) == 2
    assert proto.state is ProtocolState.OPEN
    assert proto.data_to_send() == b""
    echo = parse_client_frames(proto.send_message("Hello"))
    assert echo[0][4] == b"Hello"
    proto.fail(events[1].exc)
    [(opcode, _, _, _, payload)] = parse_client_frames(proto.data_to_send())
    assert (opcode, payload[:2]) == (CLOSE, (1002).to_bytes(2, "big"))
    assert proto.state is ProtocolState.CLOSING
    assert feed(proto, server_frame(TEXT, b"more")) == []
