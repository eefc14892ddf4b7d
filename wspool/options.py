"""One option set for every front end: the table of options, their defaults and checks.

``wspool.connect``, ``Pool.connect`` and ``WebSocketApp.run_forever`` all turn their
keyword options into a frozen, validated :class:`ConnectOptions` (plus
:class:`PoolOptions` for what only the pool does: keepalive, reconnect, queue limits,
callbacks) through this module, so an option means the same everywhere and a bad value
gets the same :class:`~wspool.exceptions.WebSocketConfigurationException` (naming the
option, the value and what is allowed) from every front end.

:data:`OPTIONS` is the one table: each :class:`Option` has its default, its check and
whether only the pool takes it.  Nothing else in wspool writes an option default.
"""

from __future__ import annotations

import difflib
import socket
import ssl
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypedDict

from wspool.exceptions import WebSocketConfigurationException, WebSocketException
from wspool.pool.backoff import ReconnectPolicy, coerce_reconnect
from wspool.pool.feed import (
    FeedOptions,
    Heartbeat,
    RateLimit,
    coerce_heartbeat,
    coerce_redundancy,
    coerce_send_rate,
    coerce_subscribe,
)
from wspool.protocol.client_protocol import DEFAULT_MAX_SIZE, TEXT_ERRORS
from wspool.protocol.deflate import DeflateOptions, coerce_compression
from wspool.protocol.headers import check_subprotocols, normalize_headers
from wspool.transport.dial import DialSettings, ProxySettings
from wspool.transport.url import WebSocketURL, parse_url

if TYPE_CHECKING:
    from wspool.pool.connection import Connection

__all__ = [
    "OPTIONS",
    "Callbacks",
    "ConnectKeywords",
    "ConnectOptions",
    "Option",
    "PoolKeywords",
    "PoolOptions",
    "UnknownOptionWarning",
    "connect_options",
    "getdefaulttimeout",
    "pool_options",
    "setdefaulttimeout",
]


class _Invalid(Exception):
    """Raised by a check: ``allowed`` says what the option accepts."""

    def __init__(self, allowed: str, hint: str = "") -> None:
        super().__init__(allowed)
        self.allowed = allowed
        self.hint = hint


Check = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Option:
    """One keyword option: its default, the check that normalizes a value, and scope."""

    name: str
    default: Any
    check: Check
    pool_only: bool = False
    #: For messages: why a Pool-only option is not taken by ``wspool.connect``.
    note: str = ""


# ----------------------------------------------------------------------- checks


def _seconds(*, positive: bool, allow_none: bool) -> Check:
    bound = "> 0" if positive else ">= 0"
    allowed = f"a number of seconds {bound}" + (", or None for no limit" if allow_none else "")

    def check(value: Any) -> float | None:
        if value is None and allow_none:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid(allowed)
        if value < 0 or (positive and value == 0) or value != value:  # NaN
            raise _Invalid(allowed)
        return float(value)

    return check


def _int(*, minimum: int, allow_none: bool, unit: str = "") -> Check:
    allowed = f"an int >= {minimum}{unit}" + (", or None for no limit" if allow_none else "")

    def check(value: Any) -> int | None:
        if value is None and allow_none:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _Invalid(allowed)
        return value

    return check


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid("True or False")
    return value


def _text_or_none(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise _Invalid("a str or None")
    return value


def _headers(value: Any) -> tuple[tuple[str, str], ...]:
    return tuple(normalize_headers(value))  # raises its own, more specific messages


def _subprotocols(value: Any) -> tuple[str, ...]:
    return () if value is None else check_subprotocols(value)


def _mapping_or_none(value: Any) -> Mapping[str, Any] | None:
    if value is not None and not isinstance(value, Mapping):
        raise _Invalid("a dict or None")
    return value


def _context_or_none(value: Any) -> ssl.SSLContext | None:
    if value is not None and not isinstance(value, ssl.SSLContext):
        raise _Invalid("an ssl.SSLContext or None")
    return value


def _sockopt(value: Any) -> tuple[tuple[int, int, Any], ...]:
    allowed = "a list of (level, option, value) tuples for socket.setsockopt"
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise _Invalid(allowed)
    entries = []
    for entry in value:
        if (
            not isinstance(entry, tuple | list)
            or len(entry) != 3
            or not all(isinstance(part, int) and not isinstance(part, bool) for part in entry[:2])
        ):
            raise _Invalid(allowed, f"{entry!r} is not one")
        entries.append((entry[0], entry[1], entry[2]))
    return tuple(entries)


def _source_address(value: Any) -> tuple[str, int] | None:
    allowed = "a (host, port) tuple such as ('192.0.2.7', 0), or None"
    if value is None:
        return None
    if (
        not isinstance(value, tuple | list)
        or len(value) != 2
        or not isinstance(value[0], str)
        or isinstance(value[1], bool)
        or not isinstance(value[1], int)
        or not 0 <= value[1] <= 65535
    ):
        raise _Invalid(allowed)
    return (value[0], value[1])


def _no_proxy(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, Sequence) or not all(isinstance(item, str) for item in value):
        raise _Invalid("a list of host names, addresses or CIDR ranges, or None")
    return tuple(value)


def _mask_key_source(value: Any) -> Callable[[int], bytes] | None:
    # Called with 4 for every frame sent; the core checks what it returns.
    if value is not None and not callable(value):
        raise _Invalid("a callable taking a length and returning that many bytes, or None")
    source: Callable[[int], bytes] | None = value
    return source


def _connected_socket(value: Any) -> socket.socket | None:
    allowed = "a connected stream socket (socket.socket), or None"
    if value is None:
        return None
    if not isinstance(value, socket.socket):
        raise _Invalid(allowed)
    if value.type != socket.SOCK_STREAM:
        raise _Invalid(allowed, "it is not SOCK_STREAM")
    try:
        value.getpeername()
    except OSError as exc:
        raise _Invalid(allowed, f"it is not connected: {exc.strerror or exc}") from None
    return value


def _text_errors(value: Any) -> str:
    if value not in TEXT_ERRORS:
        raise _Invalid(
            "'strict' (close 1007), 'replace' (U+FFFD for bad bytes) or 'bytes' "
            "(an invalid text message is delivered undecoded)"
        )
    return str(value)


def _any(value: Any) -> Any:
    return value  # checked together with other options in _proxy_settings


def _ping_payload(value: Any) -> bytes:
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, bytes | bytearray | memoryview):
        raise _Invalid("str or bytes of at most 125 bytes")
    payload = bytes(value)
    if len(payload) > 125:
        raise _Invalid(
            "str or bytes of at most 125 bytes", f"it is {len(payload)} bytes (RFC 6455 §5.5)"
        )
    return payload


def _coerced(coerce: Callable[[Any], Any], allowed: str) -> Check:
    """A check from one of feed.py's coerce functions (TypeError/ValueError: invalid)."""

    def check(value: Any) -> Any:
        try:
            return coerce(value)
        except (TypeError, ValueError) as exc:
            raise _Invalid(allowed, str(exc)) from None

    return check


def _positive_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and value > 0


def _send_rate(value: Any) -> RateLimit | None:
    if value is not None and not isinstance(value, RateLimit) and not _positive_number(value):
        raise _Invalid("a number of messages per second > 0, a wspool.RateLimit, or None")
    return coerce_send_rate(value)


def _heartbeat(value: Any) -> Heartbeat | None:
    if value is not None and not isinstance(value, Heartbeat) and not _positive_number(value):
        raise _Invalid("a number of seconds > 0, a wspool.Heartbeat, or None")
    return coerce_heartbeat(value)


def _callback(value: Any) -> Any:
    if value is not None and not callable(value):
        raise _Invalid("a callable or None")
    return value


_CALLBACK_NOTE: Final = "callbacks belong to Pool.connect and WebSocketApp"
_FEED_NOTE: Final = "a stream over replaceable sessions is the pool's (docs/feeds.md)"

#: The table of every keyword option: name, default, check, scope.
OPTIONS: Final[Mapping[str, Option]] = {
    option.name: option
    for option in (
        # Opening and timeouts.
        # 0 is allowed, as for socket.settimeout: never wait (reads and writes of the
        # blocking client raise at once; the pool drops a connection whose write stalls).
        # Left out, timeout is getdefaulttimeout() (None unless setdefaulttimeout was
        # called) and open_timeout is timeout when that is > 0, else 10 s: _checked().
        Option("timeout", None, _seconds(positive=False, allow_none=True)),
        Option("open_timeout", 10.0, _seconds(positive=True, allow_none=True)),
        Option("close_timeout", 3.0, _seconds(positive=False, allow_none=False)),
        Option("redirect_limit", 3, _int(minimum=0, allow_none=False)),
        # The upgrade request.
        Option("header", None, _headers),
        Option("cookie", None, _text_or_none),
        Option("origin", None, _text_or_none),
        Option("suppress_origin", False, _flag),
        Option("host", None, _text_or_none),
        Option("subprotocols", None, _subprotocols),
        Option("compression", "deflate", coerce_compression),
        # Limits and decoding.
        Option("max_size", DEFAULT_MAX_SIZE, _int(minimum=0, allow_none=True, unit=" (bytes)")),
        Option("skip_utf8_validation", False, _flag),
        Option("text_errors", "strict", _text_errors),
        Option("fire_cont_frame", False, _flag),
        Option("enable_multithread", True, _flag),
        # TLS and sockets.
        Option("sslopt", None, _mapping_or_none),
        Option("ssl", None, _context_or_none),
        Option("sockopt", (), _sockopt),
        Option("source_address", None, _source_address),
        # A connected socket to speak WebSocket over instead of dialling (a Unix socket,
        # a tunnel built by the caller): used once, for the first hop.
        Option("socket", None, _connected_socket),
        Option("get_mask_key", None, _mask_key_source),
        # Proxies (checked together by select_proxy).
        Option("http_proxy_host", None, _text_or_none),
        Option("http_proxy_port", None, _any),
        Option("http_proxy_auth", None, _any),
        Option("http_no_proxy", None, _no_proxy),
        Option("http_proxy_timeout", None, _seconds(positive=True, allow_none=True)),
        Option("proxy_type", "http", _any),
        # The pool's own: keepalive, queue limits, reconnect, callbacks.
        Option(
            "ping_interval",
            None,
            _seconds(positive=True, allow_none=True),
            pool_only=True,
            note="keepalive pings are sent by the pool's dispatcher; call ws.ping() yourself",
        ),
        Option(
            "ping_timeout",
            None,
            _seconds(positive=True, allow_none=True),
            pool_only=True,
            note="keepalive pings are sent by the pool's dispatcher",
        ),
        Option(
            "ping_payload",
            b"",
            _ping_payload,
            pool_only=True,
            note="keepalive pings are sent by the pool's dispatcher",
        ),
        Option(
            "max_queue",
            10_000,
            _int(minimum=1, allow_none=False, unit=" (messages)"),
            pool_only=True,
            note="a blocking connection has no delivery queue",
        ),
        Option(
            "max_queue_bytes",
            64 * 1024 * 1024,
            _int(minimum=1, allow_none=True, unit=" (bytes)"),
            pool_only=True,
            note="a blocking connection has no delivery queue",
        ),
        Option(
            "reconnect",
            False,
            coerce_reconnect,
            pool_only=True,
            note="a blocking connection is not reopened; open a new one",
        ),
        # Feed-grade streams (pool/feed.py, docs/feeds.md).
        *(
            Option(name, default, check, pool_only=True, note=_FEED_NOTE)
            for name, default, check in (
                (
                    "subscribe",
                    None,
                    _coerced(
                        coerce_subscribe,
                        "a payload (str, bytes, dict or list), a list of payloads, or a "
                        "callable (conn) -> payloads",
                    ),
                ),
                ("send_rate", None, _send_rate),
                ("max_age", None, _seconds(positive=True, allow_none=True)),
                ("stale_after", None, _seconds(positive=True, allow_none=True)),
                ("heartbeat", None, _heartbeat),
                (
                    "redundancy",
                    1,
                    _coerced(
                        coerce_redundancy,
                        "an int >= 1 (live sessions per stream) or a list of other URLs",
                    ),
                ),
                ("dedupe", None, _callback),
                ("sequence", None, _callback),
            )
        ),
        *(
            Option(name, None, _callback, pool_only=True, note=_CALLBACK_NOTE)
            for name in (
                "on_open",
                "on_message",
                "on_error",
                "on_close",
                "on_ping",
                "on_pong",
                "on_data",
                "on_reconnect",
                "on_gap",
            )
        ),
    )
}

_TIMEOUT_CHECK: Final = OPTIONS["timeout"].check
_default_timeout: float | None = None

_CALLBACK_NAMES: Final = tuple(name for name in OPTIONS if name.startswith("on_"))
#: Every default, normalized once (each is immutable: None, numbers, tuples, frozen
#: DeflateOptions), so an option left out costs a dict lookup per connect.
_CHECKED_DEFAULTS: Final = {name: option.check(option.default) for name, option in OPTIONS.items()}


# ---------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    """Everything needed to open (and reopen) one connection, checked once.

    ``dial`` holds what the transport needs (proxy settings, TLS context, socket
    options); the request fields feed the opening handshake.  Frozen: sessions of the
    pool share one instance across reconnects and threads.
    """

    url: WebSocketURL
    header: tuple[tuple[str, str], ...]
    cookie: str | None
    origin: str | None
    suppress_origin: bool
    host: str | None
    subprotocols: tuple[str, ...]
    deflate: DeflateOptions | None
    max_size: int | None
    skip_utf8_validation: bool
    #: What a text message that is not UTF-8 becomes (ClientProtocol.text_errors).
    text_errors: str
    fire_cont_frame: bool
    #: ``get_mask_key``: makes each frame's masking key instead of os.urandom.
    mask_key_source: Callable[[int], bytes] | None
    dial: DialSettings
    #: ``socket``: a connected socket for the first hop instead of dialling.
    sock: socket.socket | None
    timeout: float | None
    open_timeout: float | None
    close_timeout: float
    redirect_limit: int


@dataclass(slots=True)
class Callbacks:
    """The pool's callbacks: websocket-client's signatures with the Connection first."""

    on_open: Callable[[Connection], object] | None = None
    on_message: Callable[[Connection, Any], object] | None = None
    on_error: Callable[[Connection, BaseException], object] | None = None
    on_close: Callable[[Connection, int, str], object] | None = None
    on_ping: Callable[[Connection, bytes], object] | None = None
    on_pong: Callable[[Connection, bytes], object] | None = None
    on_data: Callable[[Connection, Any, int, bool], object] | None = None
    on_reconnect: Callable[[Connection], object] | None = None
    #: ``sequence=``: a gap or a regression (``received != expected``).
    on_gap: Callable[[Connection, int, int], object] | None = None


@dataclass(frozen=True, slots=True)
class PoolOptions:
    """:class:`ConnectOptions` plus what only the pool does."""

    connect: ConnectOptions
    ping_interval: float | None
    ping_timeout: float | None
    ping_payload: bytes
    max_queue: int
    max_queue_bytes: int | None
    reconnect: ReconnectPolicy | None
    callbacks: Callbacks
    #: The feed options (pool/feed.py); None when none is given.
    feed: FeedOptions | None = None
    #: ``redundancy=[url, ...]``: what sessions 2, 3, ... open instead of ``connect``.
    alternates: tuple[ConnectOptions, ...] = ()


class ConnectKeywords(TypedDict, total=False):
    """The keyword options of :func:`wspool.connect` (defaults in :data:`OPTIONS`)."""

    timeout: float | None
    open_timeout: float | None
    close_timeout: float
    redirect_limit: int
    header: Mapping[str, str | None] | Sequence[str] | Sequence[tuple[str, str]] | None
    cookie: str | None
    origin: str | None
    suppress_origin: bool
    host: str | None
    subprotocols: Sequence[str] | None
    compression: Any
    max_size: int | None
    skip_utf8_validation: bool
    text_errors: str
    fire_cont_frame: bool
    enable_multithread: bool
    sslopt: Mapping[str, Any] | None
    ssl: ssl.SSLContext | None
    sockopt: Sequence[tuple[int, int, Any]] | None
    source_address: tuple[str, int] | None
    socket: socket.socket | None
    get_mask_key: Callable[[int], bytes] | None
    http_proxy_host: str | None
    http_proxy_port: int | str | None
    http_proxy_auth: tuple[str, str] | None
    http_no_proxy: Sequence[str] | None
    http_proxy_timeout: float | None
    proxy_type: str


class PoolKeywords(ConnectKeywords, total=False):
    """The keyword options of :meth:`wspool.Pool.connect`."""

    ping_interval: float | None
    ping_timeout: float | None
    ping_payload: str | bytes
    max_queue: int
    max_queue_bytes: int | None
    reconnect: object
    on_open: Callable[[Connection], object] | None
    on_message: Callable[[Connection, Any], object] | None
    on_error: Callable[[Connection, BaseException], object] | None
    on_close: Callable[[Connection, int, str], object] | None
    on_ping: Callable[[Connection, bytes], object] | None
    on_pong: Callable[[Connection, bytes], object] | None
    on_data: Callable[[Connection, Any, int, bool], object] | None
    on_reconnect: Callable[[Connection], object] | None
    on_gap: Callable[[Connection, int, int], object] | None
    subscribe: Any
    send_rate: float | RateLimit | None
    max_age: float | None
    stale_after: float | None
    heartbeat: float | Heartbeat | None
    redundancy: int | Sequence[str]
    dedupe: Callable[[Any], Any] | None
    sequence: Callable[[Any], int | None] | None


# --------------------------------------------------------------------- building


#: What a front end does with an option name that is not in the table: wspool's own
#: names raise; websocket-client's names (``create_connection``, ``WebSocket``,
#: ``WebSocketApp``) warn and go on, since websocket-client ignores unknown options
#: and scripts written for it pass some (docs/migration.md).
Unknown = Literal["raise", "warn"]


class UnknownOptionWarning(UserWarning):
    """An option name that wspool does not know was ignored (websocket-client's names)."""


def setdefaulttimeout(timeout: float | None) -> None:
    """Set the default of the ``timeout`` option for connections opened from now on.

    As in websocket-client: ``None`` (the initial value) means no timeout.  The value
    is checked like ``timeout=`` itself.
    """
    global _default_timeout
    try:
        _default_timeout = _TIMEOUT_CHECK(timeout)
    except _Invalid as invalid:
        raise WebSocketConfigurationException(
            f"setdefaulttimeout({timeout!r}) is invalid: it must be {invalid.allowed}"
        ) from None


def getdefaulttimeout() -> float | None:
    """The default of the ``timeout`` option (see :func:`setdefaulttimeout`)."""
    return _default_timeout


def connect_options(
    url: str, options: Mapping[str, Any], *, unknown: Unknown = "raise", stacklevel: int = 2
) -> ConnectOptions:
    """Check ``options`` for one blocking connection (``wspool.connect``).

    ``unknown="warn"`` ignores option names not in the table with an
    :class:`UnknownOptionWarning` (``stacklevel`` as for :func:`warnings.warn`, from
    this function: 2 is its caller) instead of raising.
    """
    target = parse_url(url)
    with _naming(target):
        values = _checked(options, pool=False, unknown=unknown, stacklevel=stacklevel + 1)
        return _connect(target, values)


def pool_options(
    url: str, options: Mapping[str, Any], *, unknown: Unknown = "raise", stacklevel: int = 2
) -> PoolOptions:
    """Check ``options`` for one pool connection (``Pool.connect``); ``unknown`` as
    for :func:`connect_options`."""
    target = parse_url(url)
    with _naming(target):
        values = _checked(options, pool=True, unknown=unknown, stacklevel=stacklevel + 1)
        connect = _connect(target, values)
        if connect.fire_cont_frame:
            raise WebSocketConfigurationException(
                "fire_cont_frame=True is not supported by the pool: it delivers whole "
                "messages (on_message, on_data with fin=True); use wspool.connect and "
                "recv_frame() to see single frames"
            )
        if connect.sock is not None and values["reconnect"] is not None:
            raise WebSocketConfigurationException(
                "socket= cannot be combined with reconnect: the given socket can be used "
                "for one connection only; drop reconnect, or let wspool dial the URL"
            )
        interval, timeout = values["ping_interval"], values["ping_timeout"]
        if timeout is not None and interval is None:
            raise WebSocketConfigurationException(
                f"ping_timeout={timeout!r} needs ping_interval: the pong deadline runs "
                "from each keepalive ping"
            )
        if interval is not None and timeout is not None and timeout >= interval:
            raise WebSocketConfigurationException(
                f"ping_timeout ({timeout}s) must be shorter than ping_interval "
                f"({interval}s): raise ping_interval or lower ping_timeout"
            )
        feed, alternates = _feed(values, connect)
        return PoolOptions(
            connect=connect,
            ping_interval=interval,
            ping_timeout=timeout,
            ping_payload=values["ping_payload"],
            max_queue=values["max_queue"],
            max_queue_bytes=values["max_queue_bytes"],
            reconnect=values["reconnect"],
            callbacks=Callbacks(**{name: values[name] for name in _CALLBACK_NAMES}),
            feed=feed,
            alternates=alternates,
        )


_FEED_NAMES: Final = (
    "subscribe",
    "send_rate",
    "max_age",
    "stale_after",
    "heartbeat",
    "dedupe",
    "sequence",
)


def _feed(
    values: Mapping[str, Any], connect: ConnectOptions
) -> tuple[FeedOptions | None, tuple[ConnectOptions, ...]]:
    """The feed options checked together, and the ConnectOptions of ``redundancy``'s URLs."""
    redundancy = values["redundancy"]
    if redundancy == 1 and all(values[name] is None for name in _FEED_NAMES):
        if values["on_gap"] is not None:
            raise WebSocketConfigurationException(
                "on_gap needs sequence=: a function returning each message's sequence number"
            )
        return None, ()
    alternates: tuple[ConnectOptions, ...] = ()
    if isinstance(redundancy, tuple):
        alternates = tuple(_connect(parse_url(url), values) for url in redundancy)
        redundancy = 1 + len(alternates)
    if connect.sock is not None and (redundancy > 1 or values["max_age"] is not None):
        raise WebSocketConfigurationException(
            "socket= cannot be combined with redundancy or max_age: the given socket can "
            "carry one session only"
        )
    if redundancy > 1 and values["dedupe"] is None:
        raise WebSocketConfigurationException(
            f"redundancy={values['redundancy']!r} needs dedupe=: a function giving each "
            "message a key (e.g. its sequence number), so that a message that arrives on "
            "several sessions is delivered once"
        )
    if values["on_gap"] is not None and values["sequence"] is None:
        raise WebSocketConfigurationException(
            "on_gap needs sequence=: a function returning each message's sequence number"
        )
    feed = FeedOptions(
        subscribe=values["subscribe"],
        send_rate=values["send_rate"],
        max_age=values["max_age"],
        stale_after=values["stale_after"],
        heartbeat=values["heartbeat"],
        redundancy=redundancy,
        alternates=tuple(a.url.redacted for a in alternates),
        dedupe=values["dedupe"],
        sequence=values["sequence"],
    )
    return feed, alternates


class _naming:
    """Attach the (redacted) URL to any wspool exception raised inside the block."""

    def __init__(self, url: WebSocketURL) -> None:
        self.url = url.redacted

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, WebSocketException) and exc.url is None:
            exc.url = self.url


def _checked(
    options: Mapping[str, Any], *, pool: bool, unknown: Unknown, stacklevel: int
) -> dict[str, Any]:
    """Every option of the table, checked; the defaults where not given."""
    ignored: set[str] = set()
    for name in options:
        option = OPTIONS.get(name)
        if option is None:
            problem = _unknown(name, pool=pool)
        elif option.pool_only and not pool:
            problem = f"{name} is an option of Pool.connect, not of wspool.connect: {option.note}"
        else:
            continue
        if unknown == "raise":
            raise WebSocketConfigurationException(problem)
        warnings.warn(f"{problem} (ignored)", UnknownOptionWarning, stacklevel=stacklevel)
        ignored.add(name)
    values: dict[str, Any] = {}
    for name, option in OPTIONS.items():
        if option.pool_only and not pool:
            continue
        if name not in options or name in ignored:
            values[name] = _CHECKED_DEFAULTS[name]
            continue
        value = options[name]
        try:
            values[name] = option.check(value)
        except _Invalid as invalid:
            hint = f" ({invalid.hint})" if invalid.hint else ""
            raise WebSocketConfigurationException(
                f"{name}={value!r} is invalid: it must be {invalid.allowed}{hint}"
            ) from None
        except TypeError as exc:  # a constructor given values of the wrong type
            raise WebSocketConfigurationException(f"{name}={value!r} is invalid: {exc}") from exc
    if "timeout" not in options:
        values["timeout"] = _default_timeout
    if "open_timeout" not in options and values["timeout"]:
        # As in websocket-client, where the socket timeout bounds each step of the
        # opening too: a positive timeout is also the opening's bound unless
        # open_timeout says otherwise.
        values["open_timeout"] = values["timeout"]
    return values


def _unknown(name: str, *, pool: bool) -> str:
    known = [n for n, option in OPTIONS.items() if pool or not option.pool_only]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else "see the options of wspool.connect"
    return f"unknown option {name!r}: {hint}"


def _connect(target: WebSocketURL, values: Mapping[str, Any]) -> ConnectOptions:
    proxy = ProxySettings(
        host=values["http_proxy_host"],
        port=values["http_proxy_port"],
        auth=values["http_proxy_auth"],
        no_proxy=values["http_no_proxy"],
        timeout=values["http_proxy_timeout"],
        type=values["proxy_type"],
    )
    # Selecting checks the proxy options together (type, port, auth) at once, so a
    # mistake is reported here rather than at the first dial.
    proxy.select(target)
    sslopt = values["sslopt"]
    dial = DialSettings(
        proxy=proxy,
        sslopt=None if sslopt is None else dict(sslopt),  # a copy: the caller's may change
        context=values["ssl"],
        sockopt=values["sockopt"],
        source_address=values["source_address"],
    )
    if target.secure:
        dial.ssl_context(target)  # checks sslopt now (and warms the shared context)
    return ConnectOptions(
        url=target,
        header=values["header"],
        cookie=values["cookie"],
        origin=values["origin"],
        suppress_origin=values["suppress_origin"],
        host=values["host"],
        subprotocols=values["subprotocols"],
        deflate=values["compression"],
        max_size=values["max_size"],
        skip_utf8_validation=values["skip_utf8_validation"],
        text_errors=values["text_errors"],
        fire_cont_frame=values["fire_cont_frame"],
        mask_key_source=values["get_mask_key"],
        dial=dial,
        sock=values["socket"],
        timeout=values["timeout"],
        open_timeout=values["open_timeout"],
        close_timeout=values["close_timeout"],
        redirect_limit=values["redirect_limit"],
    )
