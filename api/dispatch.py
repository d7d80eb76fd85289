"""A tool call's way through the API (design §2 steps 2-6): resolve the tool, check the caller
may call it, validate the arguments, answer from the cache, or write the job record, enqueue
`mcp.call_tool` on the server's queue and (sync) wait.

A cache hit is a job too: it gets a fresh job id and a short-lived `succeeded` job record with
`cached: true` (one script call), so `GET /jobs/<id>` answers for it like for any other call.
Identical concurrent misses share one execution (single-flight, `common.cache`): a sync
follower waits for the leading job within its own waitMs and answers from the cache; if the
leader ends without a cacheable result, or the follower's waitMs runs out first, the follower
runs its own job. Async callers never wait on another caller's job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import g

from api.auth import Caller
from common import cache, jobs
from common.config import get_settings
from common.errors import Conflict, Forbidden, NotFound
from common.heartbeats import require_worker
from common.ids import new_id
from common.metrics import observe_cache, observe_tool_call
from common.permissions import is_allowed
from common.queues import CALL_TOOL, send, server_queue
from common.registry import ToolRef, find_tool
from common.usage import record_usage, usage_for

DEFAULT_WAIT_MS = 30_000


@dataclass(frozen=True)
class Identity:
    """Who a call is for: the key's own identity, or a service key's `onBehalfOf`."""

    caller_id: str
    caller_type: str
    agent_type: str

    def as_dict(self) -> dict[str, str]:
        return {
            "callerId": self.caller_id,
            "callerType": self.caller_type,
            "agentType": self.agent_type,
        }


def identity_for(caller: Caller, on_behalf_of: dict[str, str] | None) -> Identity:
    if on_behalf_of is None:
        return Identity(caller.caller_id, caller.caller_type, caller.agent_type)
    if caller.role != "service":
        raise Forbidden("Only service keys may call onBehalfOf another caller.")
    return Identity(on_behalf_of["callerId"], on_behalf_of["callerType"], on_behalf_of["agentType"])


def resolve_tool(org_id: str, body: dict[str, Any]) -> ToolRef:
    ref = body.get("tool") or body["toolId"]
    tool = find_tool(org_id, ref)
    if tool is None or tool.removed:
        raise NotFound(f"No tool {ref!r}.", code="tool_not_found")
    if not tool.is_enabled:
        raise Conflict(f"The tool {tool.qualified_name} is disabled.", code="tool_disabled")
    if tool.server_desired_state != "connected":
        raise Conflict(
            f"The server {tool.server_slug} is disconnected.", code="server_disconnected"
        )
    return tool


def authorize(caller: Caller, who: Identity, tool: ToolRef, arguments: Any) -> None:
    """The permission matrix, for `who`'s agentType; a refusal is recorded as usage."""
    allowed, source = is_allowed(tool.tool_id, who.agent_type, token=tool.version)
    if allowed:
        return
    message = f"agentType {who.agent_type!r} may not call {tool.qualified_name}."
    refused = {**_job_fields(caller, who, tool, None), "request": {"arguments": arguments}}
    record_usage(
        **usage_for(
            refused,
            status="denied",
            duration_ms=0,
            output=None,
            error_code="permission_denied",
            cached=False,
        )
    )
    details = {"tool": tool.qualified_name, "agentType": who.agent_type, "source": source}
    observe_tool_call(tool.qualified_name, "denied")
    raise Forbidden(message, code="permission_denied", details=details)


def _job_fields(caller: Caller, who: Identity, tool: ToolRef, job_id: str | None) -> dict[str, Any]:
    return {
        "jobId": job_id,
        "orgId": caller.org_id,
        "requester": caller.caller_id,
        "caller": who.as_dict(),
        "tool": tool.qualified_name,
        "toolId": tool.tool_id,
        "toolName": tool.name,
        "serverId": tool.server_id,
        "serverSlug": tool.server_slug,
        "retryable": tool.retryable,
        "requestId": g.get("request_id", ""),  # the worker logs it too: one id per call
    }


def _answer_hit(
    caller: Caller, who: Identity, tool: ToolRef, arguments: Any, result: dict, started: float
) -> dict[str, Any]:
    job_id, now = new_id(), jobs.now_ms()
    duration_ms = round((time.perf_counter() - started) * 1000)
    job = {
        **_job_fields(caller, who, tool, job_id),
        "status": "succeeded",
        "cached": True,
        "result": result,
        "durationMs": duration_ms,
        "createdAt": now,
        "finishedAt": now,
        "request": {"arguments": arguments},
    }
    jobs.create(job_id, job, ttl_seconds=jobs.HIT_RECORD_TTL_SECONDS)
    record_usage(
        **usage_for(
            job,
            status="success",
            duration_ms=duration_ms,
            output=result,
            error_code=None,
            cached=True,
        )
    )
    return job


def enqueue(
    caller: Caller,
    who: Identity,
    tool: ToolRef,
    arguments: dict[str, Any],
    timeout_ms: int,
    job_id: str,
    cache_spec: dict[str, Any] | None = None,
) -> None:
    """Write the job record (`queued`) and send `mcp.call_tool` on the server's queue."""
    request: dict[str, Any] = {"arguments": arguments, "timeoutMs": timeout_ms}
    if cache_spec:
        request["cache"] = cache_spec
    fields = {**_job_fields(caller, who, tool, job_id), "cached": False, "request": request}
    jobs.create(job_id, {**fields, "createdAt": jobs.now_ms()})
    send(CALL_TOOL, [job_id], server_queue(tool.server_slug), argsrepr=f"('{job_id}',)")


def call(caller: Caller, who: Identity, tool: ToolRef, body: dict[str, Any], started: float):
    """Run a permitted, valid call; returns the job as it stands when the caller is answered."""
    arguments = body.get("arguments") or {}
    timeout_ms = body.get("timeoutMs") or get_settings().call_timeout_ms
    plan = cache.plan_for(tool, arguments, body.get("cache", "use"))
    sync = body.get("mode", "sync") == "sync"
    deadline = started + (body.get("waitMs", DEFAULT_WAIT_MS) / 1000 if sync else 0)
    if plan.read:
        hit = cache.lookup(plan.key)
        observe_cache(hit is not None)
        if hit is not None:
            return _answer_hit(caller, who, tool, arguments, hit, started)
    require_worker(tool.server_slug)
    job_id, leading = new_id(), False
    if plan.read:
        leader = cache.take_lock(plan, job_id, timeout_ms)
        leading = leader is None
        if leader is not None and sync:
            cache.follow(plan, leader, _left_ms(deadline))
            if (hit := cache.lookup(plan.key)) is not None:
                return _answer_hit(caller, who, tool, arguments, hit, started)
    try:
        enqueue(caller, who, tool, arguments, timeout_ms, job_id, plan.for_job(leading))
    except BaseException:
        if leading:
            cache.release_lock(plan, job_id)
        raise
    if not sync:
        return jobs.get(job_id)
    if leading:  # followers wait on this job too: pass the wake-up on
        return cache.wait_shared(job_id, _left_ms(deadline))
    return jobs.wait(job_id, _left_ms(deadline))


def _left_ms(deadline: float) -> float:
    return max(0.0, (deadline - time.perf_counter()) * 1000)


def _iso(ms: int | None) -> str | None:
    if not ms:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def job_view(job: dict[str, Any]) -> dict[str, Any]:
    """The job as callers see it (no request payload, no internal fields)."""
    view = {
        "jobId": job["jobId"],
        "status": job["status"],
        "tool": job.get("tool"),
        "toolId": job.get("toolId"),
        "cached": bool(job.get("cached")),
        "attempt": job.get("attempt"),
        "durationMs": job.get("durationMs"),
        "createdAt": _iso(job.get("createdAt")),
        "finishedAt": _iso(job.get("finishedAt")),
    }
    for name in ("result", "error", "progress"):
        if job.get(name) is not None:
            view[name] = job[name]
    return view


def visible_job(caller: Caller, job_id: str) -> dict[str, Any]:
    """The job if this caller may see it; other callers' jobs are simply not found."""
    job = jobs.get(job_id)
    if job is None or job.get("orgId") != caller.org_id:
        raise NotFound("No such job.", code="job_not_found")
    if not caller.is_admin and job.get("requester") != caller.caller_id:
        raise NotFound("No such job.", code="job_not_found")
    return job
