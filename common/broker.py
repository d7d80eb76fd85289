"""kombu's Redis transport, with one client per channel instead of one per operation.

kombu 5.7's `Channel.conn_or_acquire()` builds a new `redis.Redis` object for every publish,
ack, QoS bookkeeping step and event (each one copies ~170 response callbacks: ≈ 60 µs here),
and a worker does about six of them per tool call. A `redis.Redis` object is safe to share
between threads (every command checks a connection out of the channel's pool), so the channel
keeps one for those operations. The consuming client (`Channel.client`, busy with BRPOP) is
untouched.

It is registered under kombu's own `redis`/`rediss` aliases, so URLs keep their scheme (Flower
picks its broker view by it, and kombu its TLS defaults). `common.queues` imports this module,
so the aliases are in place before any Celery connection is made.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property

import redis
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    @cached_property
    def _shared_client(self) -> redis.Redis:
        return self._create_client()

    @contextmanager
    def conn_or_acquire(self, client: redis.Redis | None = None) -> Iterator[redis.Redis]:
        yield client or self._shared_client

    def _disconnect_pools(self) -> None:
        self.__dict__.pop("_shared_client", None)  # it holds the pool being dropped
        super()._disconnect_pools()


class Transport(kombu_redis.Transport):
    Channel = Channel


TRANSPORT = f"{__name__}:Transport"
TRANSPORT_ALIASES.update(redis=TRANSPORT, rediss=TRANSPORT)
