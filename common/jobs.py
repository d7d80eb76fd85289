"""Job records in Redis: the result store and the delivery guarantee (design §4).

`job:<id>` is a hash. The API creates it `queued`; a worker *claims* it (queued → running, with
its nodename) atomically before calling, so a duplicate delivery never runs a call twice; the
worker then *finishes* it and pushes to `done:<id>`, which a waiting API thread BLPOPs.
Running jobs are indexed in the sorted set `jobs:running` so the sweep can find those whose
worker died.
"""

from __future__ import annotations

import json
import time
from typing import Any

from common.config import get_settings
from common.redis import get_redis, key, script

TERMINAL = ("succeeded", "failed", "timeout")
DONE_TTL_SECONDS = 300
# A cache hit's record only serves a follow-up GET of the jobId just answered: at high hit
# rates a day of them would fill Redis.
HIT_RECORD_TTL_SECONDS = 600
JSON_FIELDS = ("request", "result", "error", "progress", "caller")

_CREATE = """
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
"""

# queued → running for this worker; returns the record's fields, or nil if not claimable.
_CLAIM = """
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return nil end
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[1], 'startedAt', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return redis.call('HGETALL', KEYS[1])
"""

# running (by the expected worker, or any if ARGV[1] is '') → terminal; wakes the waiter with
# the finished record itself, so the waiter needs no second read.
_FINISH = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'running' and status ~= 'queued' then return 0 end
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'worker') ~= ARGV[1] then return 0 end
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('RPUSH', KEYS[3], cjson.encode(redis.call('HGETALL', KEYS[1])))
redis.call('EXPIRE', KEYS[3], ARGV[3])
return 1
"""

# running on a dead worker → queued again (attempt + 1), only if still held by that worker.
_REQUEUE = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
if redis.call('HGET', KEYS[1], 'worker') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued', 'worker', '', 'attempt', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[3])
return 1
"""


def now_ms() -> int:
    return int(time.time() * 1000)


def job_key(job_id: str) -> str:
    return key("job", job_id)


def done_key(job_id: str) -> str:
    return key("done", job_id)


def running_key() -> str:
    return key("jobs", "running")


def _encode(fields: dict[str, Any]) -> dict[str, str]:
    out = {}
    for name, value in fields.items():
        if name in JSON_FIELDS or isinstance(value, bool | dict | list) or value is None:
            out[name] = json.dumps(value)
        else:
            out[name] = str(value)
    return out


def decode(raw: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if name in JSON_FIELDS or name in ("cached", "retryable"):
            out[name] = json.loads(value) if value else None
        elif name in ("attempt", "durationMs", "createdAt", "startedAt", "finishedAt", "timeoutMs"):
            out[name] = int(value) if value else None
        else:
            out[name] = value
    return out


def _flat(fields: dict[str, Any]) -> list[str]:
    return [item for pair in _encode(fields).items() for item in pair]


def create(job_id: str, fields: dict[str, Any], ttl_seconds: int | None = None) -> None:
    """Write a job record; it lives JOB_TTL_SECONDS unless `ttl_seconds` says less."""
    ttl = min(ttl_seconds or get_settings().job_ttl_seconds, get_settings().job_ttl_seconds)
    flat = _flat({"status": "queued", "attempt": 1, **fields})
    script(_CREATE)(keys=[job_key(job_id)], args=[ttl, *flat])


def get(job_id: str) -> dict[str, Any] | None:
    raw = get_redis().hgetall(job_key(job_id))
    return decode(raw) if raw else None


def _from_flat(flat: list[str]) -> dict[str, Any]:
    return decode(dict(zip(flat[::2], flat[1::2], strict=True)))


def claim(job_id: str, worker: str) -> dict[str, Any] | None:
    started = now_ms()
    keys = [job_key(job_id), running_key()]
    flat = script(_CLAIM)(keys=keys, args=[worker, started, job_id])
    return _from_flat(flat) if flat else None


def finish(job_id: str, fields: dict[str, Any], worker: str = "") -> bool:
    """Record a terminal state and wake waiters; False if the job was not ours to finish."""
    flat = _flat({"finishedAt": now_ms(), **fields})
    keys = [job_key(job_id), running_key(), done_key(job_id)]
    return bool(script(_FINISH)(keys=keys, args=[worker, job_id, DONE_TTL_SECONDS, *flat]))


def requeue(job_id: str, dead_worker: str, attempt: int) -> bool:
    keys = [job_key(job_id), running_key()]
    return bool(script(_REQUEUE)(keys=keys, args=[dead_worker, attempt, job_id]))


def set_progress(job_id: str, progress: dict[str, Any]) -> None:
    get_redis().hset(job_key(job_id), "progress", json.dumps(progress))


def running_jobs(older_than_ms: int = 0) -> list[str]:
    return get_redis().zrangebyscore(running_key(), 0, now_ms() - older_than_ms)


def wait(job_id: str, timeout_ms: int) -> dict[str, Any] | None:
    """Block until the job is finished or `timeout_ms` passes; returns the job as it stands.

    For the one waiter of a job (the sync call that created it): the wake-up is consumed.
    """
    if timeout_ms > 0:
        item = get_redis().blpop([done_key(job_id)], timeout=timeout_ms / 1000)
        if item is not None:
            return from_done_item(item[1])
    return get(job_id)


def from_done_item(item: str) -> dict[str, Any]:
    """The finished job a `done:<id>` entry carries."""
    return _from_flat(json.loads(item))
