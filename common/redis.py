"""Redis access. Every key the gateway writes starts with REDIS_PREFIX (design §4)."""

from __future__ import annotations

from functools import cache

import redis
from redis.commands.core import Script

from common.config import get_settings


@cache
def _client(url: str) -> redis.Redis:
    # redis-py's pool notices a fork (pid check) and opens fresh sockets in the child.
    return redis.Redis.from_url(
        url, decode_responses=True, socket_timeout=None, health_check_interval=30
    )


def get_redis() -> redis.Redis:
    return _client(get_settings().redis_url)


@cache
def _script(url: str, text: str) -> Script:
    return _client(url).register_script(text)


def script(text: str) -> Script:
    """A Lua script run by EVALSHA: several commands in one round trip, and no per-call
    pipeline object (redis-py builds a callback table for each, ~0.15 ms on the hot path)."""
    return _script(get_settings().redis_url, text)


def key(*parts: str) -> str:
    """`key("job", job_id)` → `mcpgw:job:<job_id>`."""
    return get_settings().redis_prefix + ":".join(parts)


def ping_redis() -> bool:
    try:
        return bool(get_redis().ping())
    except redis.RedisError:
        return False
