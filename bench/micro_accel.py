"""Micro-benchmark of the masking and UTF-8 candidates behind ``wspool.protocol._accel``.

Prints one table per question (size, method, ns/op, MB/s): the best of several
interleaved timeit rounds.  Run from the repository root::

    python bench/micro_accel.py                 # pure standard library
    python bench/micro_accel.py --quick         # skip the 16 MiB size
    /tmp/venv/bin/python bench/micro_accel.py   # a venv with wsaccel installed

The candidates that lost (strided ``bytes.translate``, the naive loop, a forced
single big-int on large payloads) live here only, so the numbers can be re-checked on
another machine or CPython version.  Results and the resulting choices are recorded in
``docs/accelerators.md``.
"""

from __future__ import annotations

import argparse
import codecs
import importlib
import os
import platform
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run without installing

from wspool.protocol import _accel

MASK_SIZES = [0, 2, 6, 125, 128, 1024, 64 * 1024, 1024 * 1024, 16 * 1024 * 1024]
NAIVE_MAX = 1024  # the per-byte loop is only timed where it finishes quickly

_XOR_TABLES = [bytes(b ^ k for b in range(256)) for k in range(256)]

Masker = Callable[[Any, bytes], bytes]


def mask_naive(data: Any, key: bytes) -> bytes:
    """Reference: one Python-level XOR per byte."""
    return bytes(b ^ key[i & 3] for i, b in enumerate(bytes(data)))


def mask_bigint(data: Any, key: bytes) -> bytes:
    """Whole payload as one integer, whatever its size (what _accel does up to 16 KiB)."""
    n = len(data)
    mask = (key * ((n >> 2) + 1))[:n]
    value = int.from_bytes(data, "little") ^ int.from_bytes(mask, "little")
    return value.to_bytes(n, "little")


def mask_translate(data: Any, key: bytes) -> bytes:
    """Four strided slices, each through a 256-byte XOR table, interleaved back."""
    data = bytes(data)
    out = bytearray(len(data))
    out[0::4] = data[0::4].translate(_XOR_TABLES[key[0]])
    out[1::4] = data[1::4].translate(_XOR_TABLES[key[1]])
    out[2::4] = data[2::4].translate(_XOR_TABLES[key[2]])
    out[3::4] = data[3::4].translate(_XOR_TABLES[key[3]])
    return bytes(out)


def make_chunked(chunk: int) -> Masker:
    """Big-int XOR per ``chunk`` bytes with one mask integer built per call."""

    def mask_chunked(data: Any, key: bytes) -> bytes:
        n = len(data)
        if n <= chunk:
            return mask_bigint(data, key)
        view = memoryview(data)
        mask = int.from_bytes(key * (chunk >> 2), "little")
        full = n - n % chunk
        parts = [
            (int.from_bytes(view[i : i + chunk], "little") ^ mask).to_bytes(chunk, "little")
            for i in range(0, full, chunk)
        ]
        if full < n:
            parts.append(mask_bigint(view[full:], key))
        return b"".join(parts)

    return mask_chunked


def load_wsaccel() -> tuple[Any, Any] | None:
    """(XorMaskerSimple, Utf8Validator) when wsaccel is importable."""
    try:
        xormask = importlib.import_module("wsaccel.xormask")
        utf8validator = importlib.import_module("wsaccel.utf8validator")
    except ImportError:
        return None
    return xormask.XorMaskerSimple, utf8validator.Utf8Validator


def best_times(funcs: list[Callable[[], object]], repeat: int) -> list[float]:
    """Seconds per call of each function: the best of ``repeat`` rounds of ~0.1 s runs.

    The rounds interleave the candidates, so a burst of load from other processes on a
    shared machine slows one run of every candidate rather than all runs of one.
    """
    timers = [timeit.Timer(func) for func in funcs]
    numbers = [max(1, timer.autorange()[0] // 2) for timer in timers]
    best = [float("inf")] * len(timers)
    for _ in range(repeat):
        for i, (timer, number) in enumerate(zip(timers, numbers, strict=True)):
            best[i] = min(best[i], timer.timeit(number) / number)
    return best


def human_size(n: int) -> str:
    for unit, factor in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} B"


def row(size: int, method: str, seconds: float) -> None:
    rate = f"{size / seconds / 1e6:10.0f}" if size else f"{'-':>10}"
    print(f"{human_size(size):>9}  {method:<32} {seconds * 1e9:14.0f} {rate}", flush=True)


def header(title: str) -> None:
    print(f"\n## {title}\n")
    print(f"{'size':>9}  {'method':<32} {'ns/op':>14} {'MB/s':>10}")


def bench_masking(sizes: list[int], repeat: int, wsaccel: tuple[Any, Any] | None) -> None:
    header("masking (RFC 6455 §5.3)")
    key = os.urandom(4)
    methods: list[tuple[str, Masker]] = [
        ("naive per-byte loop", mask_naive),
        ("big-int whole", mask_bigint),
        ("translate x4 strided", mask_translate),
        ("big-int chunked 4 KiB", make_chunked(4096)),
        ("big-int chunked 16 KiB", make_chunked(16384)),
        ("big-int chunked 64 KiB", make_chunked(65536)),
        ("apply_mask_stdlib (chosen)", _accel.apply_mask_stdlib),
    ]
    if wsaccel is not None:
        xor_masker = wsaccel[0]
        methods.append(("wsaccel XorMaskerSimple", lambda d, k: xor_masker(k).process(d)))
        methods.append(("apply_mask (chosen)", _accel.apply_mask))
    for size in sizes:
        data = os.urandom(size)
        expected = mask_bigint(data, key)
        names: list[str] = []
        calls: list[Callable[[], object]] = []
        for name, func in methods:
            if func is mask_naive and size > NAIVE_MAX:
                continue
            if func(data, key) != expected:
                raise SystemExit(f"{name} gave a wrong result at size {size}")

            def call(f: Masker = func, d: bytes = data) -> bytes:
                return f(d, key)

            names.append(name)
            calls.append(call)
        for name, seconds in zip(names, best_times(calls, repeat), strict=True):
            row(size, name, seconds)


def utf8_samples(size: int) -> list[tuple[str, bytes]]:
    ascii_text = (b"The quick brown fox jumps over the lazy dog. " * (size // 45 + 1))[:size]
    mixed_unit = "price €42, κόσμε, 日本語, 🙂 ok ".encode()
    mixed = mixed_unit * (size // len(mixed_unit) + 1)
    cut = size
    while cut and (mixed[cut] & 0xC0) == 0x80:  # end on a character boundary
        cut -= 1
    return [("ascii", ascii_text), ("mixed", mixed[:cut])]


def bench_utf8(sizes: list[int], repeat: int, wsaccel: tuple[Any, Any] | None) -> None:
    header("UTF-8 text message -> str (whole message, then 4 fragments)")
    for size in sizes:
        for label, data in utf8_samples(size):
            expected = data.decode()
            decoder = _accel.make_utf8_decoder()
            stdlib_incremental = codecs.getincrementaldecoder("utf-8")("strict")
            q = len(data) // 4
            fragments = [data[:q], data[q : 2 * q], data[2 * q : 3 * q], data[3 * q :]]

            def whole_bytes_decode(d: bytes = data) -> str:
                return d.decode("utf-8")

            def whole_codecs(d: bytes = data, dec: Any = stdlib_incremental) -> str:
                return str(dec.decode(d, True))

            def whole_utf8decoder(d: bytes = data, dec: Any = decoder) -> str:
                return str(dec.decode(d, True))

            def fragmented(dec: Any = decoder, frs: list[bytes] = fragments) -> str:
                last = len(frs) - 1
                return "".join([dec.decode(f, i == last) for i, f in enumerate(frs)])

            methods: list[tuple[str, Callable[[], object]]] = [
                ("bytes.decode", whole_bytes_decode),
                ("codecs incremental", whole_codecs),
                ("Utf8Decoder (chosen)", whole_utf8decoder),
                ("Utf8Decoder 4 fragments", fragmented),
            ]
            if wsaccel is not None:
                validator_cls = wsaccel[1]

                def validate(d: bytes = data, cls: Any = validator_cls) -> object:
                    return cls().validate(d)

                def validate_decode(d: bytes = data, cls: Any = validator_cls) -> str:
                    if not cls().validate(d)[0]:
                        raise ValueError("invalid")
                    return d.decode("utf-8")

                def validate_fragments(
                    frs: list[bytes] = fragments, cls: Any = validator_cls
                ) -> str:
                    validator = cls()
                    for f in frs:
                        if not validator.validate(f)[0]:
                            raise ValueError("invalid")
                    return b"".join(frs).decode("utf-8")

                methods += [
                    ("wsaccel validate only", validate),
                    ("wsaccel validate+decode", validate_decode),
                    ("wsaccel 4 frags+decode", validate_fragments),
                ]
            for name, func in methods:
                result = func()
                if not isinstance(result, tuple) and result != expected:
                    raise SystemExit(f"{name} gave a wrong result for {label} {size}")
            times = best_times([func for _, func in methods], repeat)
            for (name, _), seconds in zip(methods, times, strict=True):
                row(size, f"{label}: {name}", seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 16 MiB size")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds (best is kept)")
    parser.add_argument("--only", choices=["mask", "utf8"], help="run one table only")
    parser.add_argument("--sizes", help="comma-separated masking sizes in bytes, e.g. 2,16,128")
    args = parser.parse_args()
    wsaccel = load_wsaccel()
    print(
        f"# wspool accelerators: Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, wsaccel {'installed' if wsaccel else 'not installed'}"
    )
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else MASK_SIZES
    sizes = [s for s in sizes if not (args.quick and s > 1024 * 1024)]
    if args.only in (None, "mask"):
        bench_masking(sizes, args.repeat, wsaccel)
    if args.only in (None, "utf8"):
        bench_utf8([128, 64 * 1024, 1024 * 1024], args.repeat, wsaccel)


if __name__ == "__main__":
    main()
