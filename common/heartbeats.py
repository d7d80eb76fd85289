"""Worker heartbeats in Redis: `worker:<nodename>` JSON with a 15 s TTL (design §4)."""

from __future__ import annotations

import json
from typing import Any

from common.redis import get_redis, key

HEARTBEAT_INTERVAL_SECONDS = 5
HEARTBEAT_TTL_SECONDS = 15


def write_heartbeat(nodename: str, state: dict[str, Any]) -> None:
    get_redis().set(key("worker", nodename), json.dumps(state), ex=HEARTBEAT_TTL_SECONDS)


def remove_heartbeat(nodename: str) -> None:
    get_redis().delete(key("worker", nodename))


def live_workers() -> list[dict[str, Any]]:
    """Every worker whose heartbeat has not expired."""
    client = get_redis()
    names = list(client.scan_iter(match=key("worker", "*"), count=500))
    if not names:
        return []
    return [json.loads(raw) for raw in client.mget(names) if raw]


def is_alive(nodename: str) -> bool:
    return bool(get_redis().exists(key("worker", nodename)))


def queue_has_worker(queue: str) -> bool:
    return any(queue in w.get("queues", ()) for w in live_workers())
