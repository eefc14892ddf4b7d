"""Shard leases held in Redis or NATS JetStream KV: many machines share N shards.

Each :class:`ShardLeases` registers its owner in the engine (a member key with a TTL),
claims a fair share of the shards (``ceil(shards * replicas / live members)``) in
the order of its own rendezvous preference, renews what it holds every ``ttl / 3``
and gives back what exceeds its share.  A machine that stops renewing loses its
leases when they expire (``ttl``); the others then claim them.  Every renewal and
release is a compare-and-set on the lease's owner (Redis: a Lua script; JetStream:
the expected last sequence of the key), so a slow owner never renews or deletes a
lease that someone else took over.  docs/scaleout.md ("Shards on many machines:
leases") describes the semantics.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final
from urllib.parse import SplitResult, urlsplit

from wspool.sinks._base import SinkError, redacted_url
from wspool.sinks.nats import NatsClient, NatsError, NatsMessage, _api_error, open_nats
from wspool.sinks.redis import RedisClient, RedisError, open_redis

__all__ = ["LeaseError", "ShardLeases", "preference_order"]

log = logging.getLogger("wspool")

#: A lease is treated as lost when it could not be renewed for this share of the TTL.
SAFETY_MARGIN: Final = 2.0 / 3.0
#: The shortest TTL accepted: rounds run every ttl / 3.
MIN_TTL: Final = 0.3

_GROUP: Final = re.compile(r"[A-Za-z0-9_-]+")
_OWNER_UNSAFE: Final = re.compile(r"[\s.*>]")

#: JetStream error codes: stream name in use (other config), no message, wrong last seq.
_STREAM_NAME_IN_USE: Final = 10058
_NO_MESSAGE: Final = 10037
_WRONG_LAST_SEQUENCE: Final = 10071

#: Compare-and-set scripts: act only while the lease's value is still our owner name.
_RENEW_LUA: Final = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
)
_RELEASE_LUA: Final = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)

OnChange = Callable[[frozenset[int], frozenset[int]], None]
Slot = tuple[int, int]


class LeaseError(SinkError):
    """The lease engine could not be reached or refused the set-up; names its URL."""


def preference_order(owner: str, group: str, shards: int) -> list[int]:
    """The shards ``0 .. shards - 1`` in ``owner``'s order of preference.

    Each shard is scored with BLAKE2b of the owner and ``f"{group}/{shard}"`` (the
    rendezvous idea of :func:`wspool.processes.rendezvous`, seen from the owner's
    side): the same on every machine and run, and different owners prefer
    different shards."""
    prefix = f"{owner}\n{group}/".encode()

    def score(shard: int) -> bytes:
        return hashlib.blake2b(prefix + str(shard).encode(), digest_size=16).digest()

    return sorted(range(shards), key=score, reverse=True)


def _default_owner() -> str:
    host = _OWNER_UNSAFE.sub("-", socket.gethostname()) or "host"
    return f"{host}:{os.getpid()}:{os.urandom(3).hex()}"


def _preference_identity(owner: str, default: bool) -> str:
    """A default owner name ranks shards by its host name only, so a restarted
    process (new pid, new random part) prefers the same shards as before."""
    return owner.split(":", 1)[0] if default else owner


def _seconds(name: str, value: object, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= minimum:
        raise ValueError(f"{name} must be a number of seconds >= {minimum}, not {value!r}")
    return float(value)


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, not {value!r}")
    return value


def _safe_url(url: str, parts: SplitResult) -> str:
    try:
        return redacted_url(parts)
    except ValueError:  # a bad port: show the scheme only
        return f"{parts.scheme}://***" if parts.netloc else repr(url)


@dataclass
class _Lease:
    slot: int  # the replica slot r of (shard, r)
    token: int  # JetStream: the sequence of our last put; Redis: unused (0)
    renewed: float  # monotonic time the last successful renew (or claim) was sent


# ----------------------------------------------------------------------- engines


class _Backend:
    """One engine's lease operations; used by one thread at a time."""

    def __init__(self, parts: SplitResult, url: str, group: str, owner: str, ttl: float) -> None:
        self.parts = parts
        self.url = url
        self.group = group
        self.owner = owner
        self.ttl = ttl

    def connect(self, timeout: float) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @property
    def connected(self) -> bool:
        raise NotImplementedError

    def heartbeat(self) -> None:
        """Writes (or refreshes) our member key."""
        raise NotImplementedError

    def members(self) -> list[str]:
        """The owners whose member key is live."""
        raise NotImplementedError

    def read(self, slots: Sequence[Slot]) -> list[tuple[str | None, int]]:
        """Each slot's owner (None: free) and the token a claim must expect."""
        raise NotImplementedError

    def claim(self, slots: Sequence[tuple[Slot, int]]) -> list[int | None]:
        """Takes each free slot (expecting its token); the new token, or None."""
        raise NotImplementedError

    def renew(self, slots: Sequence[tuple[Slot, int]]) -> list[int | None]:
        """Renews each slot if it is still ours (CAS); the new token, or None."""
        raise NotImplementedError

    def release(self, slots: Sequence[tuple[Slot, int]]) -> None:
        """Deletes each slot if it is still ours (CAS)."""
        raise NotImplementedError

    def leave(self) -> None:
        """Deletes our member key."""
        raise NotImplementedError


class _RedisBackend(_Backend):
    def __init__(self, parts: SplitResult, url: str, group: str, owner: str, ttl: float) -> None:
        super().__init__(parts, url, group, owner, ttl)
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise ValueError(f"the database of a redis:// URL must be a number, not {url}")
        self.db = int(path or 0)
        self.ttl_ms = max(1, round(ttl * 1000))
        self.client: RedisClient | None = None

    @property
    def connected(self) -> bool:
        return self.client is not None

    def key(self, slot: Slot) -> str:
        return f"{self.group}:shard:{slot[0]}:{slot[1]}"

    def connect(self, timeout: float) -> None:
        self.client = open_redis(self.parts, self.url, timeout, self.db)

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.close()

    def _pipeline(self, commands: Sequence[Sequence[str | bytes | int]]) -> list[Any]:
        assert self.client is not None
        if not commands:
            return []
        replies = self.client.pipeline(commands)
        for reply in replies:
            if isinstance(reply, RedisError):
                raise reply
        return replies

    def heartbeat(self) -> None:
        key = f"{self.group}:member:{self.owner}"
        self._pipeline([["SET", key, "1", "PX", self.ttl_ms]])

    def members(self) -> list[str]:
        prefix = f"{self.group}:member:"
        found: set[str] = set()
        cursor: bytes = b"0"
        while True:
            (reply,) = self._pipeline([["SCAN", cursor, "MATCH", prefix + "*", "COUNT", 1000]])
            cursor, keys = reply
            found.update(bytes(k).decode("utf-8", "replace")[len(prefix) :] for k in keys)
            if cursor in (b"0", "0"):
                return sorted(found)

    def read(self, slots: Sequence[Slot]) -> list[tuple[str | None, int]]:
        if not slots:
            return []
        (values,) = self._pipeline([["MGET", *(self.key(slot) for slot in slots)]])
        return [(None if v is None else bytes(v).decode("utf-8", "replace"), 0) for v in values]

    def claim(self, slots: Sequence[tuple[Slot, int]]) -> list[int | None]:
        commands: list[list[str | int]] = [
            ["SET", self.key(s), self.owner, "NX", "PX", self.ttl_ms] for s, _ in slots
        ]
        return [0 if reply == "OK" else None for reply in self._pipeline(commands)]

    def renew(self, slots: Sequence[tuple[Slot, int]]) -> list[int | None]:
        commands: list[list[str | int]] = [
            ["EVAL", _RENEW_LUA, 1, self.key(s), self.owner, self.ttl_ms] for s, _ in slots
        ]
        return [0 if reply == 1 else None for reply in self._pipeline(commands)]

    def release(self, slots: Sequence[tuple[Slot, int]]) -> None:
        self._pipeline([["EVAL", _RELEASE_LUA, 1, self.key(s), self.owner] for s, _ in slots])

    def leave(self) -> None:
        self._pipeline([["DEL", f"{self.group}:member:{self.owner}"]])


class _NatsBackend(_Backend):
    """JetStream KV conventions: bucket ``group`` is stream ``KV_group`` with subjects
    ``$KV.group.>``; a put publishes to ``$KV.group.<key>``, with
    ``Nats-Expected-Last-Subject-Sequence`` for compare-and-set (0: the key must be
    absent).  ``max_age`` (the TTL) expires a lease nobody renews; renewing re-puts
    the key on the sequence of our last put.  A release deletes that very message
    (``STREAM.MSG.DELETE`` by sequence), which is a no-op once anyone put the key
    again.  A key whose last message is a KV delete or purge marker counts as free."""

    def __init__(self, parts: SplitResult, url: str, group: str, owner: str, ttl: float) -> None:
        super().__init__(parts, url, group, owner, ttl)
        if parts.path not in ("", "/"):
            raise ValueError(f"a nats:// URL has no path, not in {url}")
        self.stream = f"KV_{group}"
        self.client: NatsClient | None = None
        self.member_seq = 0

    @property
    def connected(self) -> bool:
        return self.client is not None

    def subject(self, slot: Slot) -> str:
        return f"$KV.{self.group}.shard.{slot[0]}.{slot[1]}"

    def connect(self, timeout: float) -> None:
        client = open_nats(self.parts, self.url, timeout)
        try:
            config = {
                "name": self.stream,
                "subjects": [f"$KV.{self.group}.>"],
                "max_msgs_per_subject": 1,
                "max_age": int(self.ttl * 1e9),
                "discard": "new",
                "allow_rollup_hdrs": True,
                "deny_delete": False,
                "allow_direct": True,
                "storage": "file",
                "num_replicas": 1,
            }
            answer = client.request(
                f"$JS.API.STREAM.CREATE.{self.stream}", json.dumps(config).encode()
            )
            error = _api_error(self.url, f"creating the KV bucket {self.group!r}", answer)
            if error is not None and error.err_code != _STREAM_NAME_IN_USE:
                raise error
            if error is not None:
                self._check_bucket(client)
        except BaseException:
            client.close()
            raise
        self.client = client

    def _check_bucket(self, client: NatsClient) -> None:
        """An existing bucket of another configuration: its max_age must be our TTL
        (it is what expires a lease nobody renews)."""
        answer = client.request(f"$JS.API.STREAM.INFO.{self.stream}")
        error = _api_error(self.url, f"the info of the KV bucket {self.group!r}", answer)
        if error is not None:
            raise error
        config = answer.json().get("config", {})
        max_age = config.get("max_age", 0) / 1e9
        if abs(max_age - self.ttl) > 0.001 or config.get("max_msgs_per_subject") != 1:
            raise NatsError(
                f"{self.url}: the KV bucket {self.group!r} (stream {self.stream}) exists with "
                f"max_age {max_age:g}s and max_msgs_per_subject "
                f"{config.get('max_msgs_per_subject')}, but leases need max_age = ttl "
                f"({self.ttl:g}s) and 1: give every owner of the group the same ttl, "
                f"or delete the stream"
            )

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.close()

    def _requests(self, items: Sequence[tuple[str, bytes, dict[str, str] | None]]) -> list[Any]:
        """Publishes every item with its own reply subject at once, then waits for
        every answer; returns them in order as (message, decoded JSON)."""
        client = self.client
        assert client is not None
        waiting: dict[str, int] = {}
        for i, (subject, payload, headers) in enumerate(items):
            reply = client.new_reply()
            client.publish(subject, payload, reply=reply, headers=headers)
            waiting[reply] = i
        if not items:
            return []
        client.flush()
        answers: list[Any] = [None] * len(items)
        while waiting:
            message = client.next_message()
            i = waiting.pop(message.subject, -1)
            if i >= 0:
                answers[i] = message
        return answers

    def _put(self, items: Sequence[tuple[str, int | None]]) -> list[int | None]:
        """Puts our owner name on each subject, expecting its last sequence (None:
        no expectation); the new sequence, or None when the expectation failed."""
        requests = []
        for subject, expected in items:
            headers = None
            if expected is not None:
                headers = {"Nats-Expected-Last-Subject-Sequence": str(expected)}
            requests.append((subject, self.owner.encode(), headers))
        out: list[int | None] = []
        for (subject, _), answer in zip(items, self._requests(requests), strict=True):
            error = _api_error(self.url, f"putting {subject!r}", answer)
            if error is None:
                out.append(int(answer.json()["seq"]))
            elif error.err_code == _WRONG_LAST_SEQUENCE:
                out.append(None)  # someone else put the key since: not ours
            else:
                raise error
        return out

    def heartbeat(self) -> None:
        (seq,) = self._put([(f"$KV.{self.group}.member.{self.owner}", None)])
        self.member_seq = seq or 0

    def members(self) -> list[str]:
        prefix = f"$KV.{self.group}.member."
        answer = self._requests(
            [
                (
                    f"$JS.API.STREAM.INFO.{self.stream}",
                    json.dumps({"subjects_filter": prefix + ">"}).encode(),
                    None,
                )
            ]
        )[0]
        error = _api_error(self.url, f"listing the members of {self.group!r}", answer)
        if error is not None:
            raise error
        subjects = answer.json().get("state", {}).get("subjects") or {}
        return sorted(s[len(prefix) :] for s in subjects if s.startswith(prefix))

    def read(self, slots: Sequence[Slot]) -> list[tuple[str | None, int]]:
        what = f"$JS.API.STREAM.MSG.GET.{self.stream}"
        answers = self._requests(
            [(what, json.dumps({"last_by_subj": self.subject(s)}).encode(), None) for s in slots]
        )
        out: list[tuple[str | None, int]] = []
        for slot, answer in zip(slots, answers, strict=True):
            error = _api_error(self.url, f"reading {self.subject(slot)!r}", answer)
            if error is not None:
                if error.err_code == _NO_MESSAGE:
                    out.append((None, 0))
                    continue
                raise error
            message = answer.json()["message"]
            seq = int(message["seq"])
            if message.get("hdrs"):
                marker = NatsMessage("", None, base64.b64decode(message["hdrs"]), b"")
                if marker.headers.get("KV-Operation") in ("DEL", "PURGE"):
                    out.append((None, seq))
                    continue
            owner = base64.b64decode(message.get("data", "")).decode("utf-8", "replace")
            out.append((owner, seq))
        return out

    def claim(self, slots: Sequence[tuple[Slot, int]]) -> list[int | None]:
        return self._put([(self.subject(s), token) for s, token in slots])

    def renew(self, slots: Sequence[tuple[Slot, int]]) -> list[int | None]:
        return self._put([(self.subject(s), token) for s, token in slots])

    def _delete(self, seqs: Sequence[int]) -> None:
        what = f"$JS.API.STREAM.MSG.DELETE.{self.stream}"
        answers = self._requests(
            [(what, json.dumps({"seq": seq, "no_erase": True}).encode(), None) for seq in seqs]
        )
        for seq, answer in zip(seqs, answers, strict=True):
            error = _api_error(self.url, f"deleting message {seq}", answer)
            if error is not None and error.err_code is None:
                raise error  # no responder; a gone message (someone put again) is fine

    def release(self, slots: Sequence[tuple[Slot, int]]) -> None:
        self._delete([token for _, token in slots if token])

    def leave(self) -> None:
        if self.member_seq:
            self._delete([self.member_seq])


# ----------------------------------------------------------------------- the leases


class ShardLeases:
    """Claims a fair share of ``shards`` shards for this process, by leases in an engine.

    ``url`` is ``redis://[[user]:password@]host[:port][/db]`` or
    ``nats://[[user]:password@ | token@]host[:port]`` (JetStream on).  ``group``
    names the set of shards (every process sharing them uses the same group, shard
    count and replicas), ``owner`` this process (default
    ``"<hostname>:<pid>:<6 hex>"``; no spaces or dots), ``ttl`` the lease lifetime in
    seconds (renewed every ``ttl / 3``), ``replicas`` how many distinct owners hold
    each shard (2: hot standby), ``timeout`` the seconds one engine operation may take
    (capped at ``ttl / 3`` after :meth:`start`, so a hung engine cannot outlast the
    safety margin).

    ``on_change(gained, lost)`` runs on the lease thread after each round that changed
    :attr:`held`, never under a lock; :meth:`close` does not call it.

    Membership: each owner refreshes a member key with the TTL; the fair share is
    ``ceil(shards * replicas / live members)``.  An owner claims free shards in its
    rendezvous preference order (:func:`preference_order`) up to its share, and
    releases its least preferred shards above it, so a new member gets work without
    anyone dying.  Renewals and releases are compare-and-set on the owner; a renewal
    that finds the lease gone or taken drops the shard at once (``losses``), and a
    lease not renewed for ``ttl * 2 / 3`` (engine unreachable) is dropped too, before
    anyone else can take it.
    """

    def __init__(
        self,
        url: str,
        group: str,
        shards: int,
        *,
        owner: str | None = None,
        ttl: float = 10.0,
        replicas: int = 1,
        on_change: OnChange | None = None,
        timeout: float = 5.0,
    ) -> None:
        parts = urlsplit(url)
        shown = _safe_url(url, parts)
        if parts.scheme not in ("redis", "nats") or not parts.hostname:
            raise ValueError(
                f"ShardLeases needs a redis://host[:port][/db] or nats://host[:port] URL, "
                f"not {shown}"
            )
        try:
            parts.port  # noqa: B018 -- raises ValueError on a bad port
        except ValueError as exc:
            raise ValueError(f"bad port in {shown}: {exc}") from None
        if not isinstance(group, str) or not _GROUP.fullmatch(group):
            raise ValueError(f"group must be a name of letters, digits, '_' and '-', not {group!r}")
        self.shards = _count("shards", shards)
        self.replicas = _count("replicas", replicas)
        self.ttl = _seconds("ttl", ttl, MIN_TTL)
        self.timeout = _seconds("timeout", timeout, 0.01)
        if on_change is not None and not callable(on_change):
            raise ValueError(
                f"on_change must be a function(gained, lost) or None, not {on_change!r}"
            )
        default = owner is None
        if owner is None:
            owner = _default_owner()
        elif not isinstance(owner, str) or not owner or _OWNER_UNSAFE.search(owner):
            raise ValueError(
                f"owner must be a non-empty name without spaces, '.', '*' or '>': {owner!r}"
            )
        #: The engine URL with the password hidden: what messages and logs show.
        self.url = shown
        self.group = group
        self.owner = owner
        self._on_change = on_change
        self._order = preference_order(_preference_identity(owner, default), group, self.shards)
        self._rank = {shard: i for i, shard in enumerate(self._order)}
        backend = _RedisBackend if parts.scheme == "redis" else _NatsBackend
        self._engine: _Backend = backend(parts, shown, group, owner, self.ttl)
        self._interval = self.ttl / 3
        self._margin = self.ttl * SAFETY_MARGIN
        # _cond guards the state below; engine calls happen outside it.
        self._cond = threading.Condition()
        self._leases: dict[int, _Lease] = {}
        self._members: list[str] = []
        self._fair = 0
        self._counts = dict.fromkeys(("rounds", "claims", "losses", "releases", "renew_errors"), 0)
        self._last_ok: float | None = None
        self._last_error: str | None = None
        self._failing = 0  # rounds failed in a row
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._closed = False

    # ------------------------------------------------------------------ public

    def start(self) -> None:
        """Connects, registers the member and runs the first claim round in this
        thread, then starts the daemon thread that renews every ``ttl / 3``.
        Raises :class:`LeaseError` (naming the URL) when the engine cannot be used."""
        with self._cond:
            if self._closed:
                raise LeaseError(f"the leases of {self.group!r} on {self.url} are closed")
            if self._started:
                return
            self._started = True
        try:
            self._engine.connect(self.timeout)
            changed = self._round()
        except (OSError, SinkError) as exc:
            self._engine.close()
            with self._cond:
                self._started = False
            text = str(exc) if self.url in str(exc) else f"{self.url}: {exc}"
            raise LeaseError(
                f"cannot hold leases of {self.group!r}: {text} (is the engine running and "
                f"the URL right?)"
            ) from exc
        self._notify(changed)
        self._thread = threading.Thread(
            target=self._run, name=f"wspool-leases {self.group} {self.url}", daemon=True
        )
        self._thread.start()

    @property
    def held(self) -> frozenset[int]:
        """The shards held now (a lease past the safety margin no longer counts)."""
        now = time.monotonic()
        with self._cond:
            return frozenset(
                s for s, lease in self._leases.items() if now - lease.renewed < self._margin
            )

    @property
    def members(self) -> list[str]:
        """The live owners seen in the last round, sorted."""
        with self._cond:
            return list(self._members)

    @property
    def fair_share(self) -> int:
        """``ceil(shards * replicas / members)`` as of the last round."""
        with self._cond:
            return self._fair

    def stats(self) -> dict[str, Any]:
        """``held`` (sorted), ``members``, ``fair_share``, ``rounds``, ``claims``,
        ``losses`` (renewals refused or leases past the margin), ``releases``,
        ``renew_errors`` (rounds the engine failed), ``last_renew_age`` (seconds since
        the last successful round, None before one), ``connected``, ``last_error``."""
        held = sorted(self.held)
        with self._cond:
            data: dict[str, Any] = dict(self._counts)
            data["held"] = held
            data["members"] = list(self._members)
            data["fair_share"] = self._fair
            data["owner"] = self.owner
            data["last_renew_age"] = (
                None if self._last_ok is None else time.monotonic() - self._last_ok
            )
            data["connected"] = self._engine.connected
            data["last_error"] = self._last_error
        return data

    def wait_for(
        self, predicate: Callable[[frozenset[int]], bool] | int | None = None, timeout: float = 10.0
    ) -> bool:
        """Waits until ``predicate(held)`` is true (an int: ``len(held) == n``; None:
        the next round ended); False if ``timeout`` seconds passed first."""
        deadline = time.monotonic() + timeout
        if predicate is None:
            with self._cond:
                rounds = self._counts["rounds"]
                return self._cond.wait_for(lambda: self._counts["rounds"] > rounds, timeout)
        if isinstance(predicate, int):
            count = predicate
            check: Callable[[frozenset[int]], bool] = lambda held: len(held) == count  # noqa: E731
        else:
            check = predicate
        while True:
            if check(self.held):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with self._cond:
                self._cond.wait(min(left, self._interval / 2))

    def close(self) -> None:
        """Stops renewing, releases the leases still ours (compare-and-set) and the
        member key, and disconnects.  Idempotent; does not call ``on_change``."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self.timeout + self.ttl)
        with self._cond:
            held = [((s, lease.slot), lease.token) for s, lease in self._leases.items()]
            self._leases.clear()
            self._cond.notify_all()
        if not self._started:
            return
        try:
            if not self._engine.connected:
                self._engine.connect(min(self.timeout, self._interval))
            self._engine.release(held)
            self._engine.leave()
        except (OSError, SinkError) as exc:
            log.warning("leases: %s: could not release on close (they expire): %s", self.url, exc)
        finally:
            self._engine.close()

    def __enter__(self) -> ShardLeases:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ShardLeases {self.group!r} {self.owner!r} on {self.url}>"

    # ------------------------------------------------------------------ the rounds

    def _stop_renewing(self) -> None:
        """Test helper: the machine "dies": the thread stops and the connection drops
        without releasing anything."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + self.ttl)
        self._engine.close()

    def _run(self) -> None:
        op_timeout = min(self.timeout, self._interval)
        while not self._stop.is_set():
            began = time.monotonic()
            before = self._holding()
            try:
                if not self._engine.connected:
                    self._engine.connect(op_timeout)
                self._round()
                if self._failing:
                    log.warning(
                        "leases: %s works again after %d failed round(s)", self.url, self._failing
                    )
                self._failing = 0
            except (OSError, SinkError) as exc:
                self._engine.close()
                self._failing += 1
                text = str(exc) if self.url in str(exc) else f"{self.url}: {exc}"
                with self._cond:
                    self._counts["renew_errors"] += 1
                    self._last_error = text
                log.log(
                    logging.WARNING if self._failing == 1 else logging.DEBUG,
                    "leases of %r: %s; retrying every %.2fs",
                    self.group,
                    text,
                    self._interval,
                )
            except Exception:
                self._engine.close()
                log.exception("leases of %r on %s: unexpected error", self.group, self.url)
            self._expire()
            after = self._holding()
            self._notify((after - before, before - after))
            self._stop.wait(max(0.0, self._interval - (time.monotonic() - began)))

    def _holding(self) -> frozenset[int]:
        """The shards in the lease table, past the margin or not (lease thread)."""
        with self._cond:
            return frozenset(self._leases)

    def _expire(self) -> None:
        """Drops every lease past the safety margin (the engine could not renew it)."""
        now = time.monotonic()
        with self._cond:
            late = [s for s, lease in self._leases.items() if now - lease.renewed >= self._margin]
            for shard in late:
                del self._leases[shard]
            self._counts["losses"] += len(late)
        if late:
            log.warning(
                "leases of %r: dropped shard(s) %s: not renewed within %.2fs (%s)",
                self.group,
                sorted(late),
                self._margin,
                self.url,
            )

    def _round(self) -> tuple[frozenset[int], frozenset[int]]:
        """One round: member key, renewals, membership, releases or claims."""
        engine = self._engine
        before = self._holding()
        sent = time.monotonic()
        engine.heartbeat()
        with self._cond:
            mine = [(s, lease.slot, lease.token) for s, lease in self._leases.items()]
        tokens = engine.renew([((s, r), token) for s, r, token in mine])
        lost: list[int] = []
        with self._cond:
            for (shard, _, _), token in zip(mine, tokens, strict=True):
                lease = self._leases.get(shard)
                if lease is None:
                    continue
                if token is None:
                    del self._leases[shard]
                    lost.append(shard)
                else:
                    lease.token, lease.renewed = token, sent
            self._counts["losses"] += len(lost)
        if lost:
            log.warning("leases of %r: lost shard(s) %s to another owner", self.group, sorted(lost))
        members = engine.members()
        if self.owner not in members:
            members.append(self.owner)
            members.sort()
        fair = math.ceil(self.shards * self.replicas / len(members))
        with self._cond:
            self._members, self._fair = members, fair
            held = dict(self._leases)
        if len(held) > fair:
            extras = sorted(held, key=self._rank.__getitem__)[fair:]
            engine.release([((s, held[s].slot), held[s].token) for s in extras])
            with self._cond:
                for shard in extras:
                    self._leases.pop(shard, None)
                self._counts["releases"] += len(extras)
            log.info(
                "leases of %r: released shard(s) %s above the fair share %d",
                self.group,
                sorted(extras),
                fair,
            )
        elif len(held) < fair:
            self._claim(fair - len(held), set(held))
        elif self.replicas > 1:
            self._swap(fair, held)
        with self._cond:
            self._counts["rounds"] += 1
            self._last_ok = sent
            self._cond.notify_all()
        after = self._holding()
        return after - before, before - after

    def _claim(self, need: int, held: set[int]) -> None:
        engine = self._engine
        wanted = [s for s in self._order if s not in held]
        slots = [(s, r) for s in wanted for r in range(self.replicas)]
        state = dict(zip(slots, engine.read(slots), strict=True))
        adopt: list[tuple[Slot, int]] = []  # slots already ours (a restart, an outage)
        take: list[tuple[Slot, int]] = []
        for shard in wanted:
            if len(adopt) + len(take) >= need:
                break
            owners = [state[(shard, r)] for r in range(self.replicas)]
            ours = [r for r, (owner, _) in enumerate(owners) if owner == self.owner]
            if ours:
                adopt.append(((shard, ours[0]), owners[ours[0]][1]))
                continue
            free = [r for r, (owner, _) in enumerate(owners) if owner is None]
            if free:
                take.append(((shard, free[0]), owners[free[0]][1]))
        sent = time.monotonic()
        results = engine.renew(adopt) + engine.claim(take)
        gained = []
        with self._cond:
            for ((shard, r), _), token in zip(adopt + take, results, strict=True):
                if token is not None:
                    self._leases[shard] = _Lease(r, token, sent)
                    gained.append(shard)
            self._counts["claims"] += len(gained)
        if gained:
            log.info("leases of %r: claimed shard(s) %s", self.group, sorted(gained))

    def _swap(self, fair: int, held: dict[int, _Lease]) -> None:
        """Unblocks replicas: an owner below its share may find every free slot on
        shards it already holds (one owner, one replica of a shard).  An owner at
        its share then takes such a slot (compare-and-set: one owner wins) and gives
        that owner a shard it lacks, keeping its own count."""
        engine = self._engine
        slots = [(s, r) for s in range(self.shards) for r in range(self.replicas)]
        holders: dict[int, dict[str, int]] = {s: {} for s in range(self.shards)}
        free: dict[int, tuple[int, int]] = {}
        counts: dict[str, int] = {}
        for (shard, r), (owner, token) in zip(slots, engine.read(slots), strict=True):
            if owner is None:
                free.setdefault(shard, (r, token))
            else:
                holders[shard][owner] = r
                counts[owner] = counts.get(owner, 0) + 1
        with self._cond:
            members = set(self._members)
        for shard in self._order:
            if shard in held or shard not in free:
                continue
            starved = [o for o in holders[shard] if o in members and counts[o] < fair]
            for other in starved:
                gifts = [s for s in held if other not in holders[s]]
                if not gifts:
                    continue
                r, token = free[shard]
                sent = time.monotonic()
                (got,) = engine.claim([((shard, r), token)])
                if got is None:
                    return
                gift = max(gifts, key=self._rank.__getitem__)
                engine.release([((gift, held[gift].slot), held[gift].token)])
                with self._cond:
                    self._leases[shard] = _Lease(r, got, sent)
                    self._leases.pop(gift, None)
                    self._counts["claims"] += 1
                    self._counts["releases"] += 1
                log.info(
                    "leases of %r: took shard %d, left shard %d to %s (replicas)",
                    self.group,
                    shard,
                    gift,
                    other,
                )
                return

    def _notify(self, changed: tuple[frozenset[int], frozenset[int]]) -> None:
        gained, lost = changed
        if self._on_change is None or not (gained or lost):
            return
        try:
            self._on_change(gained, lost)
        except Exception:
            log.exception("leases of %r: on_change raised", self.group)
