"""Sinks: forward every delivered message into an engine (Redis Streams, NATS JetStream).

Not imported by ``import wspool``: ``from wspool.sinks import RedisStreamSink``.  A sink's
:meth:`~Sink.on_message` is a Pool ``on_message`` callback; docs/sinks.md describes the
record format, batching, backpressure and the delivery guarantees.
"""

from __future__ import annotations

from wspool.sinks._base import Record, Sink, SinkClosedError, SinkError
from wspool.sinks.nats import NatsJetStreamSink
from wspool.sinks.redis import RedisStreamSink

__all__ = [
    "NatsJetStreamSink",
    "Record",
    "RedisStreamSink",
    "Sink",
    "SinkClosedError",
    "SinkError",
]
