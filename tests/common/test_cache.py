"""The result cache on real Redis: which tools are cached for how long (policy, annotations,
and cacheTtlSeconds), the key, per-call modes, the worker's settle step (store, never isError,
release the single-flight lock), and the shared wait that wakes every follower.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import replace
from typing import Any

import pytest

from common import cache, jobs
from common.config import get_settings
from common.ids import new_id
from common.redis import get_redis
from common.registry import ToolRef
from tests.harness import wait_for

_ids = itertools.count()


def tool(read_only: bool = True, ttl: int | None = None, definition_hash: str = "h1") -> ToolRef:
    return ToolRef(
        tool_id=f"tool-{next(_ids)}",
        name="search",
        server_id=new_id(),
        server_slug="demo",
        org_id="default",
        is_enabled=True,
        removed=False,
        server_desired_state="connected",
        input_schema={"type": "object"},
        annotations={"readOnlyHint": True} if read_only else {"destructiveHint": True},
        cache_ttl_seconds=ttl,
        definition_hash=definition_hash,
    )


@pytest.mark.parametrize(
    ("policy", "read_only", "own_ttl", "expected"),
    [
        ("readonly", True, None, 300),
        ("readonly", False, None, 0),
        ("readonly", True, 0, 0),
        ("readonly", False, 60, 60),  # a positive TTL opts a tool in under readonly
        ("readonly", True, 60, 60),
        ("all", False, None, 300),
        ("all", True, 0, 0),
        ("all", False, 45, 45),
        ("none", True, None, 0),
        ("none", True, 60, 0),  # none is the kill switch: no tool opts back in
    ],
)
def test_ttl_follows_policy_annotations_and_the_tool_own_ttl(policy, read_only, own_ttl, expected):
    settings = replace(get_settings(), cache_policy=policy, cache_ttl_seconds=300)
    assert cache.ttl_for(tool(read_only, own_ttl), settings) == expected


def test_a_zero_default_ttl_leaves_only_tools_with_their_own():
    settings = replace(get_settings(), cache_ttl_seconds=0)
    assert cache.ttl_for(tool(True, None), settings) == 0
    assert cache.ttl_for(tool(True, 30), settings) == 30


def test_the_key_names_server_tool_definition_and_canonical_arguments():
    ref = tool()
    key = cache.result_key(ref, {"b": 1, "a": [1, {"y": 2, "x": 1}]})
    prefix = get_settings().redis_prefix
    assert key.startswith(f"{prefix}cache:{ref.server_id}:search:h1:")
    assert len(key.rsplit(":", 1)[1]) == 64
    assert key == cache.result_key(ref, {"a": [1, {"x": 1, "y": 2}], "b": 1})
    assert key != cache.result_key(ref, {"a": [1, {"x": 1, "y": 2}], "b": 2})
    assert key != cache.result_key(replace(ref, definition_hash="h2"), {"b": 1, "a": [1]})


def test_the_call_mode_decides_reading_writing_and_single_flight():
    ref, args = tool(), {"q": "x"}
    use = cache.plan_for(ref, args, "use")
    assert (use.read, use.write, use.ttl) == (True, True, 300)
    assert use.key == cache.result_key(ref, args) and "inflight:" in use.lock
    refresh = cache.plan_for(ref, args, "refresh")
    assert (refresh.read, refresh.write, refresh.lock) == (False, True, "")
    assert cache.plan_for(ref, args, "bypass") == cache.Plan()
    assert cache.plan_for(tool(read_only=False), args, "use") == cache.Plan()
    assert cache.Plan().for_job(lock_held=False) is None
    assert use.for_job(lock_held=False) == {"key": use.key, "ttlSeconds": 300, "lock": ""}
    assert use.for_job(lock_held=True)["lock"] == use.lock


def _job(plan: cache.Plan, job_id: str, lock_held: bool) -> dict[str, Any]:
    return {"jobId": job_id, "request": {"arguments": {}, "cache": plan.for_job(lock_held)}}


def test_settle_stores_a_good_result_and_releases_the_lock_it_holds():
    plan = cache.plan_for(tool(), {"q": "settle"})
    job_id = new_id()
    assert cache.take_lock(plan, job_id, 10_000) is None
    result = {"content": [], "structuredContent": {"result": 1}, "isError": False}
    assert cache.settle(_job(plan, job_id, True), {"status": "succeeded", "result": result})
    assert cache.lookup(plan.key) == result
    assert get_redis().get(plan.lock) is None
    assert 0 < get_redis().ttl(plan.key) <= 300


def test_settle_stores_nothing_for_failures_and_errors_but_still_releases():
    plan = cache.plan_for(tool(), {"q": "fail"})
    for fields in (
        {"status": "succeeded", "result": {"content": [], "isError": True}},
        {"status": "timeout", "error": {"code": "timeout"}},
        {"status": "failed", "error": {"code": "server_unavailable"}},
    ):
        job_id = new_id()
        assert cache.take_lock(plan, job_id, 10_000) is None
        assert cache.settle(_job(plan, job_id, True), fields) is False
        assert cache.lookup(plan.key) is None
        assert get_redis().get(plan.lock) is None


def test_settle_leaves_a_lock_another_job_holds_and_ignores_uncached_jobs():
    plan = cache.plan_for(tool(), {"q": "other"})
    assert cache.take_lock(plan, "leader", 10_000) is None
    ok = {"status": "succeeded", "result": {"content": [], "isError": False}}
    assert cache.settle(_job(plan, "someone-else", True), ok) is True
    assert get_redis().get(plan.lock) == "leader"
    assert cache.settle({"jobId": "x", "request": {"arguments": {}}}, ok) is False


def test_the_lock_names_its_leader_and_only_the_leader_releases_it():
    plan = cache.plan_for(tool(), {"q": "lock"})
    assert cache.take_lock(plan, "first", 10_000) is None
    assert cache.take_lock(plan, "second", 10_000) == "first"
    assert 10_000 < get_redis().pttl(plan.lock) <= 10_000 + cache.LOCK_MARGIN_MS
    cache.release_lock(plan, "second")
    assert get_redis().get(plan.lock) == "first"
    cache.release_lock(plan, "first")
    assert cache.take_lock(plan, "third", 10_000) is None


def _blocked_in_blpop() -> int:
    return sum(client.get("cmd") == "blpop" for client in get_redis().client_list())


def test_every_waiter_on_a_shared_job_wakes_when_it_finishes():
    job_id = new_id()
    jobs.create(job_id, {"jobId": job_id, "orgId": "default", "createdAt": jobs.now_ms()})
    woke: list[tuple[str, float]] = []

    def waiter() -> None:
        job = cache.wait_shared(job_id, 10_000)
        woke.append((job["status"], time.monotonic()))

    threads = [threading.Thread(target=waiter) for _ in range(8)]
    for thread in threads:
        thread.start()
    wait_for(lambda: _blocked_in_blpop() >= 8, 5, "waiters blocked on the done list")
    finished_at = time.monotonic()
    assert jobs.finish(job_id, {"status": "succeeded", "result": {"content": []}})
    for thread in threads:
        thread.join(5)
    assert [status for status, _ in woke] == ["succeeded"] * 8
    assert max(at for _, at in woke) - finished_at < 1.0
    assert cache.wait_shared(job_id, 10_000)["status"] == "succeeded"  # late: no blocking


def test_a_follower_stops_waiting_when_the_leader_gives_up_without_a_job():
    plan = cache.plan_for(tool(), {"q": "gone"})
    assert cache.take_lock(plan, "never-enqueued", 10_000) is None
    cache.release_lock(plan, "never-enqueued")
    started = time.monotonic()
    cache.follow(plan, "never-enqueued", 10_000)
    assert time.monotonic() - started < cache.FOLLOW_SLICE_MS / 1000 + 0.5


def test_a_follower_returns_when_the_leading_job_ends_and_at_its_own_deadline():
    plan = cache.plan_for(tool(), {"q": "lead"})
    job_id = new_id()
    jobs.create(job_id, {"jobId": job_id, "orgId": "default", "createdAt": jobs.now_ms()})
    assert cache.take_lock(plan, job_id, 10_000) is None
    started = time.monotonic()
    cache.follow(plan, job_id, 300)  # still queued: gives up at its own deadline
    assert 0.25 < time.monotonic() - started < 1.0
    threading.Timer(0.2, jobs.finish, (job_id, {"status": "failed"})).start()
    started = time.monotonic()
    cache.follow(plan, job_id, 10_000)
    assert time.monotonic() - started < 2.0
    assert jobs.get(job_id)["status"] == "failed"
