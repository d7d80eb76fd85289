"""The result cache (design §2 steps 5 and 7, §4) and single-flight for identical misses.

Key: `cache:<serverId>:<toolName>:<definitionHash>:<sha256 of canonical JSON arguments>`, so a
changed tool definition never serves an old entry. The value is the MCP result's JSON.

Which tools (`ttl_for`): CACHE_POLICY `none` caches nothing, whatever a tool says (the
operator's kill switch). Otherwise a tool's `cacheTtlSeconds` 0 opts it out, a positive value
opts it in (under `readonly` too) with that TTL, and null leaves it to the policy: `readonly`
caches tools annotated `readOnlyHint: true`, `all` every tool, both for CACHE_TTL_SECONDS
(0 there: only tools with their own TTL are cached). `isError` results are never stored.

Per call (`cache`): `use` reads then writes, `refresh` only writes, `bypass` does neither. The API
reads; the worker writes (`settle`), before it marks the job done, from what the API put in
the job's request (`Plan.for_job`), so it needs no database.

Single-flight (`use` only): the first miss takes `inflight:<same parts>` (SET NX, value = its job
id, expiring after the call's timeout); an identical miss meanwhile waits for that job to
finish (`follow`) and then reads the cache. The worker releases the lock when it settles
the job. Waiters share the job's `done:<jobId>` list: each one that pops the wake-up token pushes
it back, so every waiter wakes (the list keeps its short TTL).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from common import jobs
from common.canonical import sha256_json
from common.config import Settings, get_settings
from common.redis import get_redis, key, script
from common.registry import ToolRef

MODES = ("use", "bypass", "refresh")
LOCK_MARGIN_MS = 5000  # a lock outlives the call's timeout by this much (queueing time)
FOLLOW_SLICE_MS = 1000

# Worker side, one round trip: store the result (if any), then release the lock if still ours.
_SETTLE = """
if ARGV[1] ~= '' then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end
if KEYS[2] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def ttl_for(tool: ToolRef, settings: Settings | None = None) -> int:
    """Seconds this tool's results are kept; 0 = not cached."""
    settings = settings or get_settings()
    own = tool.cache_ttl_seconds
    if settings.cache_policy == "none" or own == 0:
        return 0
    if own is not None and own > 0:
        return own
    if settings.cache_policy == "all" or tool.annotations.get("readOnlyHint") is True:
        return settings.cache_ttl_seconds
    return 0


def _parts(tool: ToolRef, arguments: Any) -> tuple[str, ...]:
    return (tool.server_id, tool.name, tool.definition_hash, sha256_json(arguments))


def result_key(tool: ToolRef, arguments: Any) -> str:
    return key("cache", *_parts(tool, arguments))


@dataclass(frozen=True)
class Plan:
    """What the cache does for one call."""

    key: str = ""  # "" = the call does not touch the cache
    lock: str = ""  # single-flight lock key ("" = no single-flight)
    ttl: int = 0
    read: bool = False
    write: bool = False

    def for_job(self, lock_held: bool) -> dict[str, Any] | None:
        """What the worker needs to settle the job (stored in the job's request)."""
        if not self.write:
            return None
        return {"key": self.key, "ttlSeconds": self.ttl, "lock": self.lock if lock_held else ""}


def plan_for(tool: ToolRef, arguments: Any, mode: str = "use") -> Plan:
    ttl = ttl_for(tool)
    if ttl <= 0 or mode == "bypass":
        return Plan()
    parts = _parts(tool, arguments)
    read = mode == "use"
    return Plan(
        key=key("cache", *parts),
        lock=key("inflight", *parts) if read else "",
        ttl=ttl,
        read=read,
        write=True,
    )


def lookup(cache_key: str) -> dict[str, Any] | None:
    raw = get_redis().get(cache_key)
    return json.loads(raw) if raw is not None else None


def settle(job: dict[str, Any], fields: dict[str, Any]) -> bool:
    """Worker side, before the job is marked done: store a cacheable result, release the lock.

    Returns whether the result was stored.
    """
    spec = (job.get("request") or {}).get("cache")
    if not spec:
        return False
    result = fields.get("result")
    keep = fields.get("status") == "succeeded" and result and not result.get("isError")
    value = json.dumps(result) if keep else ""
    lock = spec.get("lock") or ""
    keys = [spec["key"], lock]
    script(_SETTLE)(keys=keys, args=[value, spec["ttlSeconds"], job.get("jobId", "")])
    return bool(keep)


def take_lock(plan: Plan, job_id: str, timeout_ms: int) -> str | None:
    """Lead this miss (None) or learn the job id of the call already leading it."""
    ttl_ms = timeout_ms + LOCK_MARGIN_MS
    return get_redis().set(plan.lock, job_id, nx=True, px=ttl_ms, get=True)


def release_lock(plan: Plan, job_id: str) -> None:
    """Drop the lock if this job still holds it (the API's way out when enqueueing fails)."""
    script(_RELEASE)(keys=[plan.lock], args=[job_id])


def follow(plan: Plan, leader: str, timeout_ms: float) -> None:
    """Wait (at most `timeout_ms`) until the leading job ends or is given up, in short slices:
    a leader that never wrote its job (it failed to enqueue) releases the lock, and a follower
    notices within a slice instead of waiting out its whole waitMs."""
    deadline = time.monotonic() + timeout_ms / 1000
    while (left := (deadline - time.monotonic()) * 1000) >= 1:
        job = wait_shared(leader, min(left, FOLLOW_SLICE_MS))
        if job is not None and job["status"] in jobs.TERMINAL:
            return
        if job is None and get_redis().get(plan.lock) != leader:
            return


_HAND_BACK = """
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
"""


def wait_shared(job_id: str, timeout_ms: float) -> dict[str, Any] | None:
    """Like `jobs.wait`, for a job several callers wait on: the wake-up token is passed on."""
    client = get_redis()
    if timeout_ms >= 1 and client.hget(jobs.job_key(job_id), "status") not in jobs.TERMINAL:
        done = jobs.done_key(job_id)
        popped = client.blpop([done], timeout=timeout_ms / 1000)
        if popped is not None:
            script(_HAND_BACK)(keys=[done], args=[popped[1], jobs.DONE_TTL_SECONDS])
            return jobs.from_done_item(popped[1])
    return jobs.get(job_id)
