"""Commands every worker must see (open/close a session) travel on the pub/sub channel
`<prefix>control`; a worker answers on a reply list the sender BLPOPs (design §4)."""

from __future__ import annotations

import json
import time
from typing import Any

from common.ids import new_id
from common.redis import get_redis, key

REPLY_TTL_SECONDS = 60


def channel() -> str:
    return key("control")


def new_reply_key() -> str:
    return key("reply", new_id())


def publish(action: str, server_id: str, slug: str | None = None, reply: str | None = None) -> None:
    message = {"action": action, "serverId": server_id}
    message.update({k: v for k, v in (("slug", slug), ("reply", reply)) if v is not None})
    get_redis().publish(channel(), json.dumps(message))


def send_reply(reply_key: str, body: dict[str, Any]) -> None:
    pipe = get_redis().pipeline(transaction=False)
    pipe.rpush(reply_key, json.dumps(body))
    pipe.expire(reply_key, REPLY_TTL_SECONDS)
    pipe.execute()


def collect_replies(reply_key: str, expected: int, timeout_s: float) -> list[dict[str, Any]]:
    """Up to `expected` replies, waiting at most `timeout_s` in all."""
    deadline = time.monotonic() + timeout_s
    replies: list[dict[str, Any]] = []
    client = get_redis()
    while len(replies) < expected:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        item = client.blpop([reply_key], timeout=remaining)
        if item is None:
            break
        replies.append(json.loads(item[1]))
    return replies


def command(
    action: str, server_id: str, slug: str, expected: int, timeout_s: float
) -> list[dict[str, Any]]:
    """Tell every worker, then wait (bounded) for `expected` of those serving `slug` to answer."""
    reply = new_reply_key()
    publish(action, server_id, slug, reply)
    return collect_replies(reply, expected, timeout_s)
