"""Per-key request budget (RATE_LIMIT_PER_MINUTE; 0 = off): a fixed one-minute window counted
in Redis, so every API process shares one budget per key."""

from __future__ import annotations

import time

from api.auth import Caller
from common.config import get_settings
from common.errors import RateLimited
from common.redis import key, script

WINDOW_SECONDS = 60
_COUNT = """
local used = redis.call('INCR', KEYS[1])
if used == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return used
"""


def enforce(caller: Caller) -> None:
    limit = get_settings().rate_limit_per_minute
    if not limit:
        return
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    counter = key("rate", caller.key_id or caller.caller_id, str(window))
    used = script(_COUNT)(keys=[counter], args=[WINDOW_SECONDS * 2])
    if used > limit:
        retry_after = int((window + 1) * WINDOW_SECONDS - now) + 1
        raise RateLimited(f"More than {limit} requests this minute for this key.", retry_after)
