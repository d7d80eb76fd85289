"""API key lookup for every request, answered from Redis without a database round trip.

`apikey:<sha256>` holds the key's caller identity (never the key). It is filled from Postgres on
a miss and deleted when the key is revoked (after the commit, before the DELETE answers), so a
revocation holds from the next request on. Revoked or unknown keys are not cached: they cost a
query, which only the holder of a bad key pays.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from common.models import ApiKey
from common.redis import get_redis, key

CACHE_TTL_SECONDS = 3600


def _cache_key(key_hash: str) -> str:
    return key("apikey", key_hash)


def lookup(session_factory, key_hash: str) -> dict[str, Any] | None:
    """The live key's identity fields, or None if unknown or revoked."""
    cached = get_redis().get(_cache_key(key_hash))
    if cached:
        return json.loads(cached)
    with session_factory() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))
        identity = _identity(row) if row is not None and row.revoked_at is None else None
    if identity is not None:
        get_redis().set(_cache_key(key_hash), json.dumps(identity), ex=CACHE_TTL_SECONDS)
    return identity


def _identity(row: ApiKey) -> dict[str, Any]:
    return {
        "caller_id": row.caller_id,
        "caller_type": row.caller_type,
        "agent_type": row.agent_type,
        "org_id": row.org_id,
        "role": row.role,
        "key_id": row.id,
    }


def forget(key_hash: str) -> None:
    """Drop a key's cached identity (call after its revocation committed)."""
    get_redis().delete(_cache_key(key_hash))
