"""Sinks: forward every delivered message into an engine (Redis Streams, NATS JetStream).

Not imported by ``import wspool``: ``from wspool.sinks import RedisStreamSink``.  A sink's
:meth:`~Sink.on_message` is a Pool ``on_message`` callback; docs/sinks.md describes the
record format, batching, backpressure and the delivery guarantees.  :class:`ShardLeases`
shares N shards between machines by leases in the same engines (docs/scaleout.md).
"""

from __future__ import annotations

from wspool.sinks._base import Record, Sink, SinkClosedError, SinkError
from wspool.sinks.lease import LeaseError, ShardLeases
from wspool.sinks.nats import NatsJetStreamSink
from wspool.sinks.redis import RedisStreamSink

__all__ = [
    "LeaseError",
    "NatsJetStreamSink",
    "Record",
    "RedisStreamSink",
    "ShardLeases",
    "Sink",
    "SinkClosedError",
    "SinkError",
]
