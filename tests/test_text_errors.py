"""The decode policy for text messages that are not UTF-8 (``text_errors``).

RFC 6455 §8.1: a client that receives invalid UTF-8 in a text message must fail the
connection (1007); that is the default, "strict".  For servers known to send such
messages, "replace" decodes with U+FFFD and "bytes" delivers that message undecoded
(valid text messages stay str); neither closes the connection.
``skip_utf8_validation=True`` (no check at all) overrides the policy.
"""

from __future__ import annotations

import queue
import zlib

import pytest
from conftest import WSServerFactory
from frontends import FrontEnd, front
from wsserver import Opcode, ServerConnection, encode_frame

import wspool
from wspool import WebSocketConfigurationException, WebSocketPayloadException
from wspool.protocol.client_protocol import ClientProtocol
from wspool.protocol.deflate import PerMessageDeflate
from wspool.protocol.events import Message, ProtocolError

__all__ = ["front"]

BAD = b"caf\xc3\xa9 \xff\xfe ok"  # valid UTF-8, then two bytes that never are


def _events(policy: str, data: bytes, **kw: object) -> list[object]:
    return list(ClientProtocol(text_errors=policy, **kw).receive_data(data))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("replace", "café \ufffd\ufffd ok"), ("bytes", BAD)],
)
def test_policy_for_a_whole_message(policy: str, expected: str | bytes) -> None:
    """§8.1 relaxed on request: the message comes out, the next one too."""
    events = _events(policy, encode_frame(Opcode.TEXT, BAD) + encode_frame(Opcode.TEXT, b"next"))
    assert events == [Message(Opcode.TEXT, expected), Message(Opcode.TEXT, "next")]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("replace", "café \ufffd\ufffd ok"), ("bytes", BAD)],
)
def test_policy_for_a_fragmented_message(policy: str, expected: str | bytes) -> None:
    """§5.4 fragments: the policy applies to the reassembled message (a sequence cut
    between two fragments is still one character)."""
    data = (
        encode_frame(Opcode.TEXT, BAD[:4], fin=False)  # "caf" + the first byte of é
        + encode_frame(Opcode.CONTINUATION, BAD[4:9], fin=False)
        + encode_frame(Opcode.CONTINUATION, BAD[9:])
    )
    assert _events(policy, data) == [Message(Opcode.TEXT, expected)]


def test_strict_is_the_default_and_fails_with_1007() -> None:
    (event,) = _events("strict", encode_frame(Opcode.TEXT, BAD))
    assert isinstance(event, ProtocolError)
    assert isinstance(event.exc, WebSocketPayloadException)
    assert event.exc.close_code == 1007
    (event,) = list(ClientProtocol().receive_data(encode_frame(Opcode.TEXT, BAD)))
    assert isinstance(event, ProtocolError)


def test_policy_applies_to_compressed_messages() -> None:
    """RFC 7692: the policy applies after decompression."""
    compressor = zlib.compressobj(wbits=-15)
    payload = compressor.compress(BAD) + compressor.flush(zlib.Z_SYNC_FLUSH)
    payload = payload[:-4]  # §7.2.1: the empty block's tail is removed
    codec = PerMessageDeflate()
    events = list(
        ClientProtocol(text_errors="replace", deflate=codec).receive_data(
            encode_frame(Opcode.TEXT, payload, rsv1=True)
        )
    )
    assert events == [Message(Opcode.TEXT, "café \ufffd\ufffd ok")]


def test_skip_utf8_validation_overrides_the_policy() -> None:
    (event,) = _events("bytes", encode_frame(Opcode.TEXT, BAD), skip_utf8_validation=True)
    assert isinstance(event, Message) and isinstance(event.data, str)
    assert event.data.encode("utf-8", "surrogateescape") == BAD


def test_a_bad_policy_is_refused() -> None:
    with pytest.raises(WebSocketConfigurationException, match="text_errors"):
        wspool.connect("ws://127.0.0.1:9/", text_errors="ignore")  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", ["replace", "bytes"])
def test_policy_on_every_front_end(
    front: FrontEnd, ws_server: WSServerFactory, policy: str
) -> None:
    """The connection stays open: the bad message and the next one arrive; the
    server's echo of our reply proves it."""
    replies: queue.Queue[bytes] = queue.Queue()

    def handler(conn: ServerConnection) -> None:
        conn.send_raw(encode_frame(Opcode.TEXT, BAD))
        conn.send_message("after")
        replies.put(conn.recv_message(5)[1])

    server = ws_server(handler, compression=False)
    handle = front.open(server.url, text_errors=policy)
    first = handle.recv()
    assert first == ("café \ufffd\ufffd ok" if policy == "replace" else BAD)
    assert handle.recv() == "after"
    handle.send("still open")
    assert replies.get(timeout=5) == b"still open"
    handle.close()
