"""Redis access. Every key the gateway writes starts with REDIS_PREFIX (design §4)."""

from __future__ import annotations

from functools import cache

import redis

from common.config import get_settings


@cache
def _client(url: str) -> redis.Redis:
    # redis-py's pool notices a fork (pid check) and opens fresh sockets in the child.
    return redis.Redis.from_url(
        url, decode_responses=True, socket_timeout=None, health_check_interval=30
    )


def get_redis() -> redis.Redis:
    return _client(get_settings().redis_url)


def key(*parts: str) -> str:
    """`key("job", job_id)` → `mcpgw:job:<job_id>`."""
    return get_settings().redis_prefix + ":".join(parts)


def ping_redis() -> bool:
    try:
        return bool(get_redis().ping())
    except redis.RedisError:
        return False
