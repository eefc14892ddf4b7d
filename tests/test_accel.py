"""Masking (RFC 6455 §5.3) and fail-fast UTF-8 decoding (RFC 6455 §8.1, RFC 3629 §4).

The pure-Python paths always run; the wsaccel path is tested only where wsaccel is
installed.  UTF-8 results are checked against an independent reference built from the
RFC 3629 §4 byte-range table, not against the codec under test.
"""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Iterator

import pytest

from wspool.exceptions import WebSocketConfigurationException
from wspool.protocol import _accel
from wspool.protocol._accel import (
    MASK_CHUNK,
    Utf8Decoder,
    apply_mask,
    apply_mask_stdlib,
    make_utf8_decoder,
)

Masker = _accel.MaskFunction

# --------------------------------------------------------------------------- masking


def naive_mask(data: bytes, key: bytes) -> bytes:
    """RFC 6455 §5.3 verbatim: octet i is XORed with octet i MOD 4 of the key."""
    return bytes(octet ^ key[i % 4] for i, octet in enumerate(data))


KEYS = [
    b"\x00\x00\x00\x00",
    b"\xff\xff\xff\xff",
    b"\x01\x02\x04\x08",
    b"\x37\xfa\x21\x3d",
    *(random.Random(seed).randbytes(4) for seed in range(4)),
]

# Every size up to 67 (all key phases and short tails), every size around the chunking
# threshold and its multiples, and a few large odd sizes.
MASK_SIZES = sorted(
    {
        *range(68),
        125,
        126,
        127,
        128,
        1024,
        *(MASK_CHUNK * m + d for m in (1, 2, 3) for d in range(-5, 6)),
        100_003,
    }
)

IMPLEMENTATIONS: list[tuple[str, Masker]] = [
    ("apply_mask", apply_mask),
    ("apply_mask_stdlib", apply_mask_stdlib),
]


def payload(size: int) -> bytes:
    return random.Random(size).randbytes(size)


@pytest.mark.parametrize(("name", "mask"), IMPLEMENTATIONS, ids=[n for n, _ in IMPLEMENTATIONS])
def test_rfc6455_5_3_mask_matches_naive_reference_for_every_size(name: str, mask: Masker) -> None:
    for size in MASK_SIZES:
        data = payload(size)
        for key in KEYS:
            result = mask(data, key)
            assert type(result) is bytes, (name, size)
            assert result == naive_mask(data, key), (name, size, key.hex())


@pytest.mark.parametrize(("name", "mask"), IMPLEMENTATIONS, ids=[n for n, _ in IMPLEMENTATIONS])
def test_rfc6455_5_3_mask_accepts_bytearray_and_memoryview(name: str, mask: Masker) -> None:
    key = b"\x9c\x01\xe7\x42"
    for size in (0, 1, 5, 128, MASK_CHUNK - 1, MASK_CHUNK, MASK_CHUNK + 1, 2 * MASK_CHUNK + 7):
        data = payload(size + 8)
        expected = naive_mask(data, key)
        buf = bytearray(data)
        assert mask(buf, key) == expected
        assert buf == data, "the input bytearray must not be modified"
        assert mask(memoryview(data), key) == expected
        assert mask(memoryview(buf), key) == expected
        # A view that starts mid-buffer restarts the key at its own first byte.
        assert mask(memoryview(data)[3 : 3 + size], key) == naive_mask(data[3 : 3 + size], key)
        # A non-contiguous view is masked as the bytes it shows.
        assert mask(memoryview(data)[::3], key) == naive_mask(data[::3], key)


@pytest.mark.parametrize(("name", "mask"), IMPLEMENTATIONS, ids=[n for n, _ in IMPLEMENTATIONS])
def test_mask_with_prefix_puts_the_prefix_unmasked_in_front(name: str, mask: Masker) -> None:
    # encode_frame passes header + key as the prefix so a large frame is built in one
    # allocation; the prefix itself must come out untouched.
    key = b"\x01\x02\x03\x04"
    head = b"\x82\x7f" + bytes(8) + key
    for size in (0, 5, 128, MASK_CHUNK, MASK_CHUNK + 1, 3 * MASK_CHUNK + 2):
        data = payload(size)
        assert mask(data, key, head) == head + naive_mask(data, key), size
        assert type(mask(memoryview(data), key, head)) is bytes


@pytest.mark.parametrize(("name", "mask"), IMPLEMENTATIONS, ids=[n for n, _ in IMPLEMENTATIONS])
def test_rfc6455_5_7_example_masked_hello(name: str, mask: Masker) -> None:
    # §5.7: "Hello" masked with key 37 fa 21 3d is 7f 9f 4d 51 58.
    assert mask(b"Hello", bytes.fromhex("37fa213d")) == bytes.fromhex("7f9f4d5158")


@pytest.mark.parametrize(("name", "mask"), IMPLEMENTATIONS, ids=[n for n, _ in IMPLEMENTATIONS])
def test_rfc6455_5_3_unmasking_is_the_same_transformation(name: str, mask: Masker) -> None:
    key = bytes.fromhex("a1b2c3d4")
    for size in (0, 3, 128, MASK_CHUNK + 3):
        data = payload(size)
        masked = mask(data, key)
        if size:
            assert masked != data
        assert mask(masked, key) == data


@pytest.mark.parametrize(("name", "mask"), IMPLEMENTATIONS, ids=[n for n, _ in IMPLEMENTATIONS])
@pytest.mark.parametrize("key", [b"", b"abc", b"abcde", b"\x00" * 8])
def test_rfc6455_5_3_mask_key_must_be_4_bytes(name: str, mask: Masker, key: bytes) -> None:
    for size in (0, 10, MASK_CHUNK + 1):
        with pytest.raises(WebSocketConfigurationException, match="exactly 4 bytes"):
            mask(b"x" * size, key)


def test_have_wsaccel_reflects_whether_wsaccel_is_importable() -> None:
    installed = importlib.util.find_spec("wsaccel") is not None
    assert installed == _accel.HAVE_WSACCEL
    assert (apply_mask is apply_mask_stdlib) == (not installed)


def test_wsaccel_path_matches_reference() -> None:
    pytest.importorskip("wsaccel")
    assert _accel.HAVE_WSACCEL
    assert apply_mask is not apply_mask_stdlib
    for size in MASK_SIZES:
        data = payload(size)
        for key in KEYS[:4]:
            expected = naive_mask(data, key)
            assert apply_mask(data, key) == expected, size
            assert apply_mask(bytearray(data), key) == expected, size
            assert apply_mask(memoryview(data), key) == expected, size
    with pytest.raises(WebSocketConfigurationException):
        apply_mask(b"abc", b"abc")


# ----------------------------------------------------------------------------- UTF-8

# RFC 3629 §4 (UTF8-octets ABNF): for each first byte, the allowed range of each
# following byte.  First bytes 80..C1 and F5..FF never start a character.
_TAIL = (0x80, 0xBF)


def _continuation_ranges(lead: int) -> tuple[tuple[int, int], ...] | None:
    if lead <= 0x7F:
        return ()
    if 0xC2 <= lead <= 0xDF:
        return (_TAIL,)
    if lead == 0xE0:
        return ((0xA0, 0xBF), _TAIL)
    if lead == 0xED:
        return ((0x80, 0x9F), _TAIL)  # excludes the UTF-16 surrogates D800..DFFF
    if 0xE1 <= lead <= 0xEF:
        return (_TAIL, _TAIL)
    if lead == 0xF0:
        return ((0x90, 0xBF), _TAIL, _TAIL)
    if 0xF1 <= lead <= 0xF3:
        return (_TAIL, _TAIL, _TAIL)
    if lead == 0xF4:
        return ((0x80, 0x8F), _TAIL, _TAIL)  # nothing above U+10FFFF
    return None


def classify(seq: bytes) -> str:
    """'valid', 'incomplete' (a prefix that more bytes can complete) or 'invalid'."""
    i = 0
    while i < len(seq):
        ranges = _continuation_ranges(seq[i])
        if ranges is None:
            return "invalid"
        for j, (low, high) in enumerate(ranges):
            if i + 1 + j == len(seq):
                return "incomplete"
            if not low <= seq[i + 1 + j] <= high:
                return "invalid"
        i += 1 + len(ranges)
    return "valid"


def first_impossible_prefix(seq: bytes) -> int | None:
    """Index of the byte at which ``seq`` can no longer be the start of valid UTF-8."""
    for end in range(1, len(seq) + 1):
        if classify(seq[:end]) == "invalid":
            return end - 1
    return None


def decode_fragments(fragments: list[bytes], decoder: Utf8Decoder | None = None) -> str:
    dec = decoder or make_utf8_decoder()
    last = len(fragments) - 1
    return "".join(dec.decode(f, i == last) for i, f in enumerate(fragments))


def failing_fragment(fragments: list[bytes]) -> int | None:
    """Index of the fragment whose decode raised, or None if the message decoded."""
    decoder = make_utf8_decoder()
    for i, fragment in enumerate(fragments):
        try:
            decoder.decode(fragment, i == len(fragments) - 1)
        except UnicodeDecodeError:
            return i
    return None


def test_reference_classifier_agrees_with_the_encoder() -> None:
    # Guards the test oracle itself: every proper prefix of an encoded scalar value is
    # incomplete, the whole encoding is valid, and encoded surrogates are invalid.
    for cp in [*range(0, 0x110000, 97), 0x7F, 0x80, 0x7FF, 0x800, 0xFFFF, 0x10000, 0x10FFFF]:
        if 0xD800 <= cp <= 0xDFFF:
            continue
        encoded = chr(cp).encode()
        assert classify(encoded) == "valid", hex(cp)
        for end in range(1, len(encoded)):
            assert classify(encoded[:end]) == "incomplete", hex(cp)
    for cp in (0xD800, 0xDBFF, 0xDC00, 0xDFFF):
        assert classify(chr(cp).encode("utf-8", "surrogatepass")) == "invalid"


# (name, fragments, index of the fragment that must raise).  Modelled on Autobahn
# test cases 6.3.x and 6.4.x: the payload becomes invalid mid-message and the client
# must fail on that fragment, not at the end of the message.
KOSME = "κόσμε".encode()
FAIL_FAST_CASES: list[tuple[str, list[bytes], int]] = [
    ("6.4.1 above U+10FFFF in 2nd frame", [KOSME, b"\xf4\x90\x80\x80", b"edited"], 1),
    ("6.4.2 F4 ends 1st frame, 90 in 2nd", [KOSME + b"\xf4", b"\x90", b"\x80\x80edited"], 1),
    ("6.4.x F4 90 at the end of a frame", [KOSME + b"\xf4\x90", b"\x80\x80edited"], 0),
    ("6.4.x surrogate ED A0 at end of frame", [KOSME + b"\xed\xa0", b"\x80edited"], 0),
    ("surrogate ED BF at end of frame", [b"\xed\xbf", b"\xbf"], 0),
    ("surrogate split ED | A0", [b"ab\xed", b"\xa0", b"\x80"], 1),
    ("lone ED A0 fragment", [b"\xed\xa0", b""], 0),
    ("overlong E0 80 at end", [b"\xe0\x80", b"\x80"], 0),
    ("overlong F0 8F at end", [b"\xf0\x8f", b"\xbf\xbf"], 0),
    ("never-valid C0 start", [b"ok", b"\xc0", b"\xaf"], 1),
    ("5-byte form F8", [b"\xf8", b"\x88\x80\x80\x80"], 0),
    ("lone continuation byte", [b"abc", b"\x80"], 1),
    ("start byte followed by ASCII", [b"\xe2\x82", b"("], 1),
    ("truncated at the end of the message", [KOSME, b"\xe2\x82"], 1),
    ("pending byte, empty final frame", [b"\xe2", b""], 1),
]


@pytest.mark.parametrize(
    ("fragments", "expected"),
    [(f, i) for _, f, i in FAIL_FAST_CASES],
    ids=[name for name, _, _ in FAIL_FAST_CASES],
)
def test_rfc6455_8_1_invalid_utf8_fails_on_the_fragment_that_breaks_it(
    fragments: list[bytes], expected: int
) -> None:
    assert failing_fragment(fragments) == expected


# Autobahn 6.3.2 / Markus Kuhn's stress test: invalid payloads sent one byte per frame.
# (payload, index of the first byte that makes it impossible)
ONE_BYTE_FRAME_CASES = [
    (KOSME + b"\xed\xa0\x80edited", len(KOSME) + 1),
    (KOSME + b"\xf4\x90\x80\x80edited", len(KOSME) + 1),
    (b"\xc0\xaf", 0),
    (b"\xe0\x80\xaf", 1),
    (b"\xf0\x80\x80\xaf", 1),
    (b"\xc1\xbf", 0),
    (b"\xe0\x9f\xbf", 1),
    (b"\xf0\x8f\xbf\xbf", 1),
    (b"\xed\xa0\x80\xed\xb0\x80", 1),
    (b"\xed\xbf\xbf", 1),
    (b"\xf8\x88\x80\x80\x80", 0),
    (b"\xfc\x84\x80\x80\x80\x80", 0),
    (b"\xfe", 0),
    (b"\xff", 0),
    (b"\xc2\x41", 1),
    (b"\xf4\x8f\xbf\xc0", 3),
]


@pytest.mark.parametrize(("payload_", "bad_index"), ONE_BYTE_FRAME_CASES)
def test_rfc6455_8_1_one_byte_frames_fail_at_the_first_impossible_byte(
    payload_: bytes, bad_index: int
) -> None:
    assert first_impossible_prefix(payload_) == bad_index  # the literal matches the oracle
    fragments = [payload_[i : i + 1] for i in range(len(payload_))]
    assert failing_fragment(fragments) == bad_index
    # The whole payload as one non-final fragment fails too (nothing is held back).
    with pytest.raises(UnicodeDecodeError):
        make_utf8_decoder().decode(payload_, final=False)


# Every boundary of a range in the RFC 3629 table, plus ASCII and never-valid bytes.
BOUNDARY_BYTES = bytes.fromhex("00417f808f909fa0bfc0c1c2dfe0edeff0f4f5ff")


def _all_short_sequences() -> Iterator[bytes]:
    """Every 1- and 2-byte sequence; each still-viable 2-byte one followed by every
    boundary byte; each viable 3-byte prefix built from boundary bytes followed by
    every boundary byte."""
    yield from (bytes((a,)) for a in range(256))
    pairs = [bytes((a, b)) for a in range(256) for b in range(256)]
    yield from pairs
    viable_pairs = [p for p in pairs if classify(p) == "incomplete"]
    triples = [p + bytes((c,)) for p in viable_pairs for c in BOUNDARY_BYTES]
    yield from triples
    for t in triples:
        if t[1] in BOUNDARY_BYTES and classify(t) == "incomplete":
            yield from (t + bytes((d,)) for d in BOUNDARY_BYTES)


def test_rfc3629_exhaustive_short_sequences_fail_exactly_when_impossible() -> None:
    decoder = make_utf8_decoder()
    mismatches: list[str] = []
    for seq in _all_short_sequences():
        kind = classify(seq)
        # One non-final fragment: raises iff no continuation could make it valid.
        try:
            decoder.decode(seq, final=False)
            raised = False
        except UnicodeDecodeError:
            raised = True
        decoder.reset()
        if raised != (kind == "invalid"):
            mismatches.append(f"{seq.hex()} non-final: raised={raised}, reference={kind}")
        # As the whole message: raises iff not complete valid UTF-8.
        try:
            decoder.decode(seq, final=True)
            raised = False
        except UnicodeDecodeError:
            raised = True
        if raised != (kind != "valid"):
            mismatches.append(f"{seq.hex()} final: raised={raised}, reference={kind}")
        if len(mismatches) > 10:
            break
    assert not mismatches


def test_rfc3629_exhaustive_byte_per_fragment_fails_at_first_impossible_byte() -> None:
    mismatches: list[str] = []
    for seq in _all_short_sequences():
        if len(seq) < 2:
            continue
        decoder = make_utf8_decoder()
        failed_at = None
        for i in range(len(seq)):
            try:
                decoder.decode(seq[i : i + 1], final=False)
            except UnicodeDecodeError:
                failed_at = i
                break
        expected = first_impossible_prefix(seq)
        if failed_at != expected:
            mismatches.append(f"{seq.hex()}: failed at {failed_at}, expected {expected}")
            if len(mismatches) > 10:
                break
    assert not mismatches


# Characters of every encoded length, including the edges around the surrogate block
# and the last scalar value.
MULTI_BYTE_TEXT = "a©Āÿκόσμεࠀ€\ud7ff\ue000\uffff𐀀😀\U0010ffffz"


def test_valid_text_split_into_two_fragments_at_every_byte() -> None:
    data = MULTI_BYTE_TEXT.encode()
    decoder = make_utf8_decoder()  # reused: final=True leaves it ready for the next message
    for cut in range(len(data) + 1):
        assert decode_fragments([data[:cut], data[cut:]], decoder) == MULTI_BYTE_TEXT, cut


def test_valid_text_split_into_three_fragments_at_every_pair_of_bytes() -> None:
    data = MULTI_BYTE_TEXT.encode()
    for first in range(len(data) + 1):
        for second in range(first, len(data) + 1):
            parts = [data[:first], data[first:second], data[second:]]
            assert decode_fragments(parts) == MULTI_BYTE_TEXT, (first, second)


def test_valid_text_one_byte_per_fragment_and_buffer_types() -> None:
    data = MULTI_BYTE_TEXT.encode()
    assert decode_fragments([data[i : i + 1] for i in range(len(data))]) == MULTI_BYTE_TEXT
    decoder = make_utf8_decoder()
    half = len(data) // 2 + 1  # inside a multi-byte character
    assert (
        decoder.decode(bytearray(data[:half])) + decoder.decode(memoryview(data)[half:], final=True)
        == MULTI_BYTE_TEXT
    )


def test_decoder_pending_holds_only_the_partial_character() -> None:
    decoder = make_utf8_decoder()
    assert decoder.decode(b"ab\xf0\x9f") == "ab"
    assert decoder.pending == b"\xf0\x9f"
    assert decoder.decode(b"\x98") == ""
    assert decoder.pending == b"\xf0\x9f\x98"
    assert decoder.decode(b"\x80", final=True) == "😀"
    assert decoder.pending == b""


def test_decoder_recovers_after_an_error_and_after_reset() -> None:
    decoder = make_utf8_decoder()
    with pytest.raises(UnicodeDecodeError):
        decoder.decode(b"\xed\xa0")
    assert decoder.pending == b""
    assert decoder.decode("ok €".encode(), final=True) == "ok €"
    with pytest.raises(UnicodeDecodeError):
        decoder.decode(b"\xf4\x90")
    assert decoder.decode(b"next", final=True) == "next"
    decoder.decode(b"\xe2\x82")
    decoder.reset()
    assert decoder.decode(b"fresh", final=True) == "fresh"


def test_truncated_surrogate_error_points_at_the_lead_byte() -> None:
    decoder = make_utf8_decoder()
    assert decoder.decode(b"abc") == "abc"
    with pytest.raises(UnicodeDecodeError) as info:
        decoder.decode(b"\xed\xb5")
    err = info.value
    assert err.encoding == "utf-8"
    assert err.object[err.start : err.end] == b"\xed"
    assert "surrogate" in err.reason
