"""A tool call's way through the API (design §2): resolve the tool, check it may be called,
write the job record, enqueue `mcp.call_tool` on the server's queue, and (sync) wait.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from api.auth import Caller
from common import jobs
from common.config import get_settings
from common.errors import Conflict, Forbidden, NotFound, Unavailable
from common.heartbeats import queue_is_consumed
from common.ids import new_id
from common.queues import CALL_TOOL, send, server_queue
from common.registry import ToolRef, find_tool


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


def enqueue(caller: Caller, who: Identity, tool: ToolRef, body: dict[str, Any]) -> str:
    queue = server_queue(tool.server_slug)
    if not queue_is_consumed(queue):
        raise Unavailable(f"No worker is serving {tool.server_slug}.", code="no_worker")
    settings = get_settings()
    job_id = new_id()
    jobs.create(
        job_id,
        {
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
            "cached": False,
            "createdAt": jobs.now_ms(),
            "request": {
                "arguments": body.get("arguments") or {},
                "timeoutMs": body.get("timeoutMs") or settings.call_timeout_ms,
            },
        },
    )
    send(CALL_TOOL, [job_id], queue, argsrepr=f"('{job_id}',)")
    return job_id


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
