"""A sink into Redis Streams, over a minimal synchronous RESP2 client.

Each record becomes ``XADD <stream> MAXLEN ~ <maxlen> * label L seq S ts T type
text|binary data D``; a batch is one pipelined write followed by its replies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, TypeAlias
from urllib.parse import SplitResult, unquote, urlsplit

from wspool.pool.backoff import ReconnectPolicy
from wspool.sinks._base import EngineConnection, Record, Sink, SinkError

__all__ = ["RedisClient", "RedisError", "RedisStreamSink"]

#: The longest reply line (status, error, length) the client accepts.
MAX_LINE: Final = 64 * 1024


class RedisError(SinkError):
    """An error reply from Redis (``-ERR ...``)."""


#: A RESP2 reply: status (str), integer, bulk (bytes or None), array, or an error.
Reply: TypeAlias = "str | int | bytes | list[Reply] | RedisError | None"


class _Incomplete(Exception):
    """The buffer ends inside a reply: read more."""


def _encode(args: Sequence[str | bytes | int | float]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


class RedisClient(EngineConnection):
    """One blocking RESP2 connection: commands pipelined, replies parsed from partial
    reads.  Errors name the server (``url``, already redacted)."""

    def pipeline(self, commands: Sequence[Sequence[str | bytes | int | float]]) -> list[Reply]:
        """Sends every command in one write, then reads one reply each, in order.
        An error reply is returned as a :class:`RedisError` in its place."""
        self.send(commands)
        return [self.reply() for _ in commands]

    def send(self, commands: Sequence[Sequence[str | bytes | int | float]]) -> None:
        """Writes every command in one go; read their replies with :meth:`reply`."""
        self._write_now(b"".join(_encode(cmd) for cmd in commands))

    def command(self, *args: str | bytes | int | float) -> Reply:
        """One command; an error reply is raised."""
        (reply,) = self.pipeline([args])
        if isinstance(reply, RedisError):
            raise reply
        return reply

    def reply(self) -> Reply:
        """Reads the next reply."""
        while True:
            start = self._pos
            try:
                value = self._parse()
            except _Incomplete:
                self._pos = start  # _fill drops only what was consumed before it
                self._fill()
                continue
            return value

    def _line(self) -> bytes:
        end = self._buf.find(b"\r\n", self._pos)
        if end < 0:
            if len(self._buf) - self._pos > MAX_LINE:
                raise OSError(f"{self.url} sent a reply line over {MAX_LINE} bytes")
            raise _Incomplete
        line = bytes(self._buf[self._pos : end])
        self._pos = end + 2
        return line

    def _parse(self) -> Reply:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", "replace")
        if kind == b"-":
            return RedisError(f"{self.url} replied: {rest.decode('utf-8', 'replace')}")
        try:
            number = int(rest)
        except ValueError:
            raise OSError(f"{self.url} sent a malformed reply {line[:80]!r}") from None
        if kind == b":":
            return number
        if kind == b"$":
            if number < 0:
                return None
            end = self._pos + number
            if len(self._buf) < end + 2:
                raise _Incomplete
            data = bytes(self._buf[self._pos : end])
            self._pos = end + 2
            return data
        if kind == b"*":
            if number < 0:
                return None
            return [self._parse() for _ in range(number)]
        raise OSError(f"{self.url} sent a reply of unknown type {line[:80]!r}")


def open_redis(parts: SplitResult, url: str, timeout: float, db: int = 0) -> RedisClient:
    """A RedisClient to ``parts`` (a split ``redis://`` URL), authenticated (``AUTH``
    with the URL's user and password) and on database ``db``; ``url`` is the redacted
    URL its errors name.  The sink and the shard leases connect through it."""
    client = RedisClient(parts.hostname or "", parts.port or 6379, url, timeout)
    try:
        if parts.password is not None:
            auth = [unquote(parts.password)]
            if parts.username:
                auth.insert(0, unquote(parts.username))
            client.command("AUTH", *auth)
        if db:
            client.command("SELECT", db)
    except BaseException:
        client.close()
        raise
    return client


class RedisStreamSink(Sink):
    """Writes every record to a Redis stream with ``XADD``, at least once.

    ``url`` is ``redis://[[user]:password@]host[:port][/db]`` (port 6379 by default);
    ``stream`` the key, formatted with ``label`` (``"wspool:{label}"``: one stream per
    connection); ``maxlen`` the approximate bound of each stream (``MAXLEN ~``).
    Each entry has the fields ``label``, ``seq``, ``ts`` (seconds, as text), ``type``
    (``text`` or ``binary``) and ``data`` (the message bytes as they were; text as
    UTF-8), plus ``id`` when a ``key`` function gives dedupe ids.  See :class:`Sink`
    for ``batch``, ``buffer``, ``key``, ``reconnect`` and ``timeout``.
    """

    schemes = ("redis",)

    def __init__(
        self,
        url: str,
        stream: str = "wspool:{label}",
        *,
        maxlen: int | None = 100_000,
        batch: int = 500,
        buffer: int = 10_000,
        key: Callable[[str | bytes], str] | None = None,
        reconnect: ReconnectPolicy | None = None,
        timeout: float = 10.0,
    ) -> None:
        try:
            stream.format(label="x")
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise ValueError(
                f"stream must be a key with an optional {{label}}, not {stream!r}"
            ) from exc
        if maxlen is not None and (
            isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1
        ):
            raise ValueError(f"maxlen must be an int >= 1 or None, not {maxlen!r}")
        path = urlsplit(url).path.strip("/")
        if path and not path.isdigit():
            raise ValueError(f"the database of a redis:// URL must be a number, not {path!r}")
        self._db = int(path or 0)
        self.stream = stream
        self.maxlen = maxlen
        self._client: RedisClient | None = None
        self._with_id = key is not None
        super().__init__(
            url, batch=batch, buffer=buffer, key=key, reconnect=reconnect, timeout=timeout
        )

    def key_for(self, label: str) -> str:
        """The stream key of ``label``."""
        return self.stream.format(label=label)

    def _connect(self) -> None:
        self._client = open_redis(self._parts, self.url, self.timeout, self._db)

    def _disconnect(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _write(self, records: list[Record], done: list[bool]) -> None:
        assert self._client is not None
        bound: list[str | int] = ["MAXLEN", "~", self.maxlen] if self.maxlen else []
        commands = []
        for r in records:
            fields: list[str | bytes | int | float] = [
                "XADD",
                self.key_for(r.label),
                *bound,
                "*",
                "label",
                r.label,
                "seq",
                r.seq,
                "ts",
                repr(r.ts),
                "type",
                r.type,
                "data",
                r.payload,
            ]
            if self._with_id:
                fields += ["id", r.id]
            commands.append(fields)
        client = self._client
        client.send(commands)
        first: RedisError | None = None
        # Replies arrive in command order; each confirmed one is marked at once, so a
        # connection lost halfway re-sends only the unconfirmed rest.
        for i in range(len(records)):
            reply = client.reply()
            if isinstance(reply, RedisError):
                first = first or reply
            else:
                done[i] = True
        if first is not None:
            raise first
