"""Worker heartbeats in Redis: `worker:<nodename>` JSON with a 15 s TTL (design §4)."""

from __future__ import annotations

import json
import time
from typing import Any

from common.errors import Unavailable
from common.queues import server_queue
from common.redis import get_redis, key

HEARTBEAT_INTERVAL_SECONDS = 5
HEARTBEAT_TTL_SECONDS = 15


def _index() -> str:
    # Nodenames by last beat: finds the `worker:*` keys without SCANning the whole keyspace.
    return key("workers")


def write_heartbeat(nodename: str, state: dict[str, Any]) -> None:
    now = time.time()
    pipe = get_redis().pipeline(transaction=False)
    pipe.set(key("worker", nodename), json.dumps(state), ex=HEARTBEAT_TTL_SECONDS)
    pipe.zadd(_index(), {nodename: now})
    pipe.zremrangebyscore(_index(), 0, now - 10 * HEARTBEAT_TTL_SECONDS)
    pipe.execute()


def remove_heartbeat(nodename: str) -> None:
    pipe = get_redis().pipeline(transaction=False)
    pipe.delete(key("worker", nodename))
    pipe.zrem(_index(), nodename)
    pipe.execute()


def live_workers() -> list[dict[str, Any]]:
    """Every worker whose heartbeat has not expired."""
    client = get_redis()
    names = client.zrangebyscore(_index(), time.time() - HEARTBEAT_TTL_SECONDS - 1, "+inf")
    if not names:
        return []
    return [json.loads(raw) for raw in client.mget([key("worker", n) for n in names]) if raw]


def is_alive(nodename: str) -> bool:
    return bool(get_redis().exists(key("worker", nodename)))


class _LiveQueues:
    """Queues with a live consumer. A hit is trusted for a second (heartbeats come every 5 s);
    a miss always re-reads, so a worker that just started consuming is seen at once."""

    TRUST_SECONDS = 1.0

    def __init__(self) -> None:
        self._queues: frozenset[str] = frozenset()
        self._read_at = 0.0

    def has(self, queue: str) -> bool:
        if queue in self._queues and time.monotonic() - self._read_at < self.TRUST_SECONDS:
            return True
        self._queues = frozenset(q for w in live_workers() for q in w.get("queues", ()))
        self._read_at = time.monotonic()
        return queue in self._queues


_live_queues = _LiveQueues()


def queue_is_consumed(queue: str) -> bool:
    return _live_queues.has(queue)


def require_worker(slug: str, within_s: float = 0.0) -> None:
    """503 `no_worker` unless a live worker consumes the server's queue, waiting up to
    `within_s` for one to start (a `*` worker picking up a server registered just now)."""
    queue = server_queue(slug)
    deadline = time.monotonic() + within_s
    while not queue_is_consumed(queue):
        if time.monotonic() >= deadline:
            raise Unavailable(f"No worker is serving {slug}.", code="no_worker")
        time.sleep(0.1)
