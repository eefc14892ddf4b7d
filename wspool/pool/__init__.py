"""Many connections, one dispatcher thread, a worker pool.

``dispatcher`` owns every socket and timer; ``session`` walks one socket from connect
to close inside it; ``connection`` is the user's handle that survives reconnects;
``feed`` holds the feed-grade stream options and the worker-side dedupe and sequence
filter; ``delivery`` hands decoded events to the worker pool in order, one drain task
per connection at a time, with backpressure; ``pool`` ties them together.
"""

from wspool.exceptions import CallbackError
from wspool.pool.backoff import ReconnectPolicy
from wspool.pool.connection import Connection, ConnectionState, ConnectionStats
from wspool.pool.feed import Heartbeat, RateLimit
from wspool.pool.pool import Pool

__all__ = [
    "CallbackError",
    "Connection",
    "ConnectionState",
    "ConnectionStats",
    "Heartbeat",
    "Pool",
    "RateLimit",
    "ReconnectPolicy",
]
