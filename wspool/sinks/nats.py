"""A sink into NATS JetStream, over a minimal synchronous NATS text-protocol client.

Each record is published with ``HPUB`` to its subject, its dedupe id in the
``Nats-Msg-Id`` header and a reply subject on the connection's inbox; a batch is one
pipelined write, then the wait for every JetStream acknowledgement
(``{"stream": ..., "seq": N}`` or ``{"error": ...}``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import SplitResult, unquote

from wspool.pool.backoff import ReconnectPolicy
from wspool.sinks._base import EngineConnection, Record, Sink, SinkError

__all__ = ["NatsClient", "NatsError", "NatsJetStreamSink", "NatsMessage"]

#: The longest protocol line (INFO, MSG head, -ERR) the client accepts.
MAX_LINE: Final = 64 * 1024
#: JetStream's "stream name already in use": create_stream then uses the stream as is.
_STREAM_NAME_IN_USE: Final = 10058
_SUBJECT_UNSAFE: Final = re.compile(r"[\s.*>]")


class NatsError(SinkError):
    """An error from a NATS server or from its JetStream API (``err_code``: the
    JetStream error code, when it gave one)."""

    def __init__(self, message: str, err_code: int | None = None) -> None:
        super().__init__(message)
        self.err_code = err_code


class NatsMessage:
    """A message the server delivered: subject, reply subject, headers and payload.

    ``status`` is the status code of the header block (``503``: no responders), or
    None; ``headers`` maps each header name to its last value."""

    __slots__ = ("headers", "payload", "reply", "status", "subject")

    def __init__(
        self, subject: str, reply: str | None, header_block: bytes | None, payload: bytes
    ) -> None:
        self.subject = subject
        self.reply = reply
        self.payload = payload
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        if header_block is not None:
            lines = header_block.decode("utf-8", "replace").split("\r\n")
            version = lines[0].split(None, 2)
            if len(version) > 1 and version[1].isdigit():
                self.status = int(version[1])
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    self.headers[name.strip()] = value.strip()

    def json(self) -> Any:
        """The payload parsed as JSON."""
        return json.loads(self.payload)


def _header_block(headers: dict[str, str]) -> bytes:
    lines = ["NATS/1.0"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


class NatsClient(EngineConnection):
    """One blocking NATS connection: CONNECT with headers, publishes pipelined,
    messages parsed from partial reads, PINGs answered.  Errors name the server
    (``url``, already redacted).  Not thread-safe: one thread uses it."""

    def __init__(
        self,
        host: str,
        port: int,
        url: str,
        timeout: float,
        *,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
    ) -> None:
        super().__init__(host, port, url, timeout)
        self._out: list[bytes] = []
        self._next_token = 0
        try:
            op, rest = self._read_op()
            if op != "INFO":
                raise OSError(f"{url} is not a NATS server (it began with {op!r})")
            self.info: dict[str, Any] = json.loads(rest)
            if self.info.get("tls_required"):
                raise NatsError(f"{url} requires TLS, which this client does not speak")
            if not self.info.get("headers", False):
                raise NatsError(f"{url} does not support headers (NATS 2.2 or later needed)")
            self.max_payload = int(self.info.get("max_payload", 1024 * 1024))
            options: dict[str, Any] = {
                "verbose": False,
                "pedantic": False,
                "headers": True,
                "no_responders": True,
                "protocol": 1,
                "lang": "python-wspool",
                "version": "0",
                "name": "wspool-sink",
            }
            if token is not None:
                options["auth_token"] = token
            elif user is not None:
                options["user"] = user
                options["pass"] = password or ""
            self._write_now(b"CONNECT " + json.dumps(options).encode() + b"\r\nPING\r\n")
            self._wait_pong()
            self.inbox = "_INBOX." + os.urandom(11).hex()
            self._write_now(f"SUB {self.inbox}.* 1\r\n".encode())
        except BaseException:
            self._sock.close()
            raise

    def new_reply(self) -> str:
        """A fresh reply subject on this connection's inbox."""
        self._next_token += 1
        return f"{self.inbox}.{self._next_token}"

    def publish(
        self,
        subject: str,
        payload: bytes,
        *,
        reply: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Queues one message; :meth:`flush` writes every queued message at once."""
        target = f"{subject} {reply}" if reply else subject
        if headers:
            block = _header_block(headers)
            size = len(block) + len(payload)
            if size > self.max_payload:
                raise NatsError(
                    f"a message of {size} bytes is over the max_payload of {self.url} "
                    f"({self.max_payload})"
                )
            head = f"HPUB {target} {len(block)} {size}\r\n".encode()
            self._out += (head, block, payload, b"\r\n")
        else:
            if len(payload) > self.max_payload:
                raise NatsError(
                    f"a message of {len(payload)} bytes is over the max_payload of "
                    f"{self.url} ({self.max_payload})"
                )
            self._out += (f"PUB {target} {len(payload)}\r\n".encode(), payload, b"\r\n")

    def flush(self) -> None:
        """Writes what :meth:`publish` queued."""
        out, self._out = self._out, []
        self._write_now(b"".join(out))

    def request(self, subject: str, payload: bytes = b"") -> NatsMessage:
        """Publishes ``payload`` with a fresh reply subject and returns the answer."""
        reply = self.new_reply()
        self.publish(subject, payload, reply=reply)
        self.flush()
        while True:
            message = self.next_message()
            if message.subject == reply:
                return message

    def next_message(self) -> NatsMessage:
        """Reads until the next MSG or HMSG, answering PINGs on the way."""
        while True:
            op, rest = self._read_op()
            if op in ("MSG", "HMSG"):
                return self._read_message(op, rest)
            self._control(op, rest)

    # ------------------------------------------------------------------ internals

    def _wait_pong(self) -> None:
        while True:
            op, rest = self._read_op()
            if op == "PONG":
                return
            self._control(op, rest)

    def _control(self, op: str, rest: str) -> None:
        if op == "PING":
            self._write_now(b"PONG\r\n")
        elif op == "-ERR":
            # The server closes the connection after nearly every -ERR.
            raise OSError(f"{self.url} reported an error: {rest.strip(chr(39))}")
        elif op not in ("+OK", "INFO", "PONG"):
            raise OSError(f"{self.url} sent an unknown operation {op!r}")

    def _read_line(self) -> str:
        while True:
            end = self._buf.find(b"\r\n", self._pos)
            if end >= 0:
                line = bytes(self._buf[self._pos : end])
                self._pos = end + 2
                return line.decode("utf-8", "replace")
            if len(self._buf) - self._pos > MAX_LINE:
                raise OSError(f"{self.url} sent a protocol line over {MAX_LINE} bytes")
            self._fill()

    def _read_exact(self, size: int) -> bytes:
        while len(self._buf) - self._pos < size:
            self._fill()
        data = bytes(self._buf[self._pos : self._pos + size])
        self._pos += size
        return data

    def _read_op(self) -> tuple[str, str]:
        line = self._read_line()
        op, _, rest = line.partition(" ")
        return op.upper(), rest

    def _read_message(self, op: str, rest: str) -> NatsMessage:
        args = rest.split()
        try:
            if op == "MSG":
                if len(args) not in (3, 4):
                    raise ValueError
                header_size, total = 0, int(args[-1])
            else:
                if len(args) not in (4, 5):
                    raise ValueError
                header_size, total = int(args[-2]), int(args[-1])
            if not 0 <= header_size <= total:
                raise ValueError
        except ValueError:
            raise OSError(f"{self.url} sent a malformed {op} line {rest[:80]!r}") from None
        subject = args[0]
        reply = args[2] if len(args) == (4 if op == "MSG" else 5) else None
        body = self._read_exact(total + 2)
        if body[-2:] != b"\r\n":
            raise OSError(f"{self.url} sent a {op} without its CRLF")
        block = body[:header_size] if op == "HMSG" else None
        return NatsMessage(subject, reply, block, body[header_size:total])


def open_nats(parts: SplitResult, url: str, timeout: float) -> NatsClient:
    """A NatsClient to ``parts`` (a split ``nats://`` URL) with its credentials: user
    and password, or a lone user part as the token; ``url`` is the redacted URL its
    errors name.  The sink and the shard leases connect through it."""
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    token = user if user is not None and password is None else None
    return NatsClient(
        parts.hostname or "",
        parts.port or 4222,
        url,
        timeout,
        user=None if token else user,
        password=password,
        token=token,
    )


def _api_error(url: str, what: str, answer: NatsMessage) -> NatsError | None:
    """The error of a JetStream API answer, or None."""
    if answer.status == 503:
        return NatsError(f"{url}: no responder for {what} (no JetStream stream, or JetStream off)")
    try:
        body = answer.json()
    except ValueError:
        return NatsError(f"{url}: {what} got an answer that is not JSON: {answer.payload[:80]!r}")
    error = body.get("error") if isinstance(body, dict) else None
    if error:
        code = error.get("err_code") if isinstance(error, dict) else None
        description = error.get("description", error) if isinstance(error, dict) else error
        return NatsError(
            f"{url}: {what} failed: {description}", code if isinstance(code, int) else None
        )
    return None


def subject_token(label: str) -> str:
    """``label`` made safe as one subject token (whitespace, ``.``, ``*``, ``>``
    become ``_``)."""
    return _SUBJECT_UNSAFE.sub("_", label) or "_"


class NatsJetStreamSink(Sink):
    """Publishes every record to NATS JetStream and waits for its acknowledgement.

    ``url`` is ``nats://[[user]:password@ | token@]host[:port]`` (port 4222 by
    default); ``subject`` is formatted with ``label`` (made one safe token by
    :func:`subject_token`).  The subject must belong to a JetStream stream: ``stream``
    names the one expected (it must exist; each publish carries
    ``Nats-Expected-Stream``), or ``create_stream`` creates that stream at connect
    time with the subjects of ``subject`` (``"wspool.{label}"`` gives ``wspool.>``)
    and ``duplicate_window`` seconds (JetStream's default when None); an existing
    stream of that name is used as it is.

    Each message is the data (text as UTF-8) with the headers ``Nats-Msg-Id`` (the
    dedupe id: JetStream stores one message per id within its duplicate window),
    ``Wspool-Label``, ``Wspool-Seq``, ``Wspool-Ts`` and ``Wspool-Type``.  See
    :class:`Sink` for ``batch``, ``buffer``, ``key``, ``reconnect`` and ``timeout``.
    """

    schemes = ("nats",)

    def __init__(
        self,
        url: str,
        subject: str = "wspool.{label}",
        *,
        stream: str | None = None,
        create_stream: str | None = None,
        duplicate_window: float | None = None,
        batch: int = 500,
        buffer: int = 10_000,
        key: Callable[[str | bytes], str] | None = None,
        reconnect: ReconnectPolicy | None = None,
        timeout: float = 10.0,
    ) -> None:
        try:
            example = subject.format(label="x")
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise ValueError(
                f"subject must be a subject with an optional {{label}}, not {subject!r}"
            ) from exc
        if not example or re.search(r"\s", example) or example.startswith("."):
            raise ValueError(f"subject {subject!r} does not make a valid NATS subject")
        if stream is not None and create_stream is not None and stream != create_stream:
            raise ValueError("give stream or create_stream, not two different names")
        for name, value in (("stream", stream), ("create_stream", create_stream)):
            if value is not None and (not value or re.search(r"[\s.*>]", value)):
                raise ValueError(f"{name} must be a stream name (no ., *, >, spaces): {value!r}")
        if duplicate_window is not None and (
            isinstance(duplicate_window, bool)
            or not isinstance(duplicate_window, int | float)
            or duplicate_window <= 0
        ):
            raise ValueError(f"duplicate_window must be seconds > 0, not {duplicate_window!r}")
        self.subject = subject
        self.stream = stream or create_stream
        self.create_stream = create_stream
        self.duplicate_window = duplicate_window
        self._client: NatsClient | None = None
        self._duplicates = 0  # sender thread only; read by stats() (an int: atomic)
        super().__init__(
            url, batch=batch, buffer=buffer, key=key, reconnect=reconnect, timeout=timeout
        )

    def subject_for(self, label: str) -> str:
        """The subject of ``label``."""
        return self.subject.format(label=subject_token(label))

    def stream_subjects(self) -> list[str]:
        """The subjects ``create_stream`` gives the stream: ``{label}`` as a wildcard."""
        template = self.subject
        if template.endswith("{label}") and template.count("{label}") == 1:
            return [template[: -len("{label}")].format() + ">"]
        return [template.format(label="*")]

    def stats(self) -> dict[str, Any]:
        """:meth:`Sink.stats` plus ``duplicates``: publishes JetStream acknowledged as
        duplicates of a stored message (same ``Nats-Msg-Id``), so not stored again."""
        data = super().stats()
        data["duplicates"] = self._duplicates
        return data

    def _check_id(self, key: str) -> None:
        if not key or "\r" in key or "\n" in key:
            raise ValueError(f"a Nats-Msg-Id must be a non-empty line, not {key!r}")

    def _connect(self) -> None:
        client = open_nats(self._parts, self.url, self.timeout)
        try:
            if self.create_stream is not None:
                self._create_stream(client, self.create_stream)
            elif self.stream is not None:
                what = f"the info of stream {self.stream!r}"
                answer = client.request(f"$JS.API.STREAM.INFO.{self.stream}")
                error = _api_error(self.url, what, answer)
                if error is not None:
                    raise error
        except BaseException:
            client.close()
            raise
        self._client = client

    def _create_stream(self, client: NatsClient, name: str) -> None:
        config: dict[str, Any] = {"name": name, "subjects": self.stream_subjects()}
        if self.duplicate_window is not None:
            config["duplicate_window"] = int(self.duplicate_window * 1e9)
        answer = client.request(f"$JS.API.STREAM.CREATE.{name}", json.dumps(config).encode())
        error = _api_error(self.url, f"creating stream {name!r}", answer)
        if error is not None and error.err_code != _STREAM_NAME_IN_USE:
            raise error

    def _disconnect(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _write(self, records: list[Record], done: list[bool]) -> None:
        client = self._client
        assert client is not None
        waiting: dict[str, int] = {}
        for i, r in enumerate(records):
            headers = {
                "Nats-Msg-Id": r.id,
                "Wspool-Label": " ".join(r.label.splitlines()),
                "Wspool-Seq": str(r.seq),
                "Wspool-Ts": repr(r.ts),
                "Wspool-Type": r.type,
            }
            if self.stream is not None:
                headers["Nats-Expected-Stream"] = self.stream
            reply = client.new_reply()
            client.publish(self.subject_for(r.label), r.payload, reply=reply, headers=headers)
            waiting[reply] = i
        client.flush()
        first: NatsError | None = None
        while waiting:
            answer = client.next_message()
            i = waiting.pop(answer.subject, -1)
            if i < 0:
                continue  # an answer to an earlier batch on this connection
            error = _api_error(
                self.url, f"publishing to {self.subject_for(records[i].label)!r}", answer
            )
            if error is not None:
                first = first or error
                continue
            done[i] = True
            if answer.json().get("duplicate"):
                self._duplicates += 1
        if first is not None:
            raise first
