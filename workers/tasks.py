"""Celery tasks. Arguments are ids only (the job record holds the request), so Flower and the
broker never see tool arguments or secrets.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis
import structlog
from celery import shared_task
from mcp.shared.exceptions import MCPError

from common import cache, jobs
from common import control as control_channel
from common.heartbeats import is_alive
from common.logs import get_logger
from common.queues import CALL_TOOL, REFRESH_TOOLS, SWEEP, send, server_queue
from common.usage import record_usage, usage_for, usage_status
from workers import process as worker_process
from workers.discovery import apply_discovery
from workers.runtime import CallTimeout, SessionUnavailable, describe_error, list_all_tools

log = get_logger(__name__)

MAX_ATTEMPTS = 2  # a lost call to a read-only/idempotent tool runs at most once more
SWEEP_GRACE_MS = 2000  # a job claimed this recently may belong to a worker still announcing itself


def _failure(code: str, message: str) -> dict[str, Any]:
    return {"status": "failed", "error": {"code": code, "message": message}}


def _usage_from(job: dict[str, Any], fields: dict[str, Any], duration_ms: int) -> dict[str, Any]:
    return usage_for(
        job,
        output=fields.get("result") or fields.get("error"),
        duration_ms=duration_ms,
        status=usage_status(fields),
        error_code=(fields.get("error") or {}).get("code"),
        cached=False,
    )


def _progress_reporter(job_id: str):
    async def report(progress: float, total: float | None, message: str | None) -> None:
        update = {"progress": progress, "total": total, "message": message}
        await asyncio.to_thread(jobs.set_progress, job_id, update)

    return report


def _execute(job: dict[str, Any]) -> dict[str, Any]:
    process = worker_process.current()
    request = job.get("request") or {}
    timeout_s = int(request.get("timeoutMs") or 60_000) / 1000
    deadline = time.monotonic() + timeout_s
    tries = 2 if job.get("retryable") else 1
    for attempt in range(1, tries + 1):
        # Looked up per attempt: a recycled session (new config) has a new owner.
        owner = process.controller.owner_for(job["serverId"])
        if owner is None:
            return _failure("server_unavailable", "The server is not connected on this worker.")
        remaining = max(0.001, deadline - time.monotonic())
        call = owner.call(
            job["toolName"],
            request.get("arguments") or {},
            remaining,
            _progress_reporter(job["jobId"]),
        )
        try:
            result = process.runtime.run(call, remaining + 5)
            return {
                "status": "succeeded",
                "result": result.model_dump(by_alias=True, exclude_none=True, mode="json"),
            }
        except CallTimeout as exc:
            return {"status": "timeout", "error": {"code": "timeout", "message": str(exc)}}
        except SessionUnavailable as exc:
            if attempt == tries or time.monotonic() >= deadline:
                return _failure("server_unavailable", str(exc))
            log.info("retrying_after_reconnect", job_id=job["jobId"], error=str(exc))
        except MCPError as exc:
            return _failure("mcp_error", exc.error.message)
    return _failure("server_unavailable", "The session could not be used.")


def _bind_log_context(job: dict[str, Any]) -> None:
    """The same ids as the API's lines for this call (design: one request id end to end)."""
    caller = job.get("caller") or {}
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(
        request_id=job.get("requestId", ""),
        job_id=job.get("jobId"),
        server=job.get("serverSlug"),
        tool=job.get("toolName"),
        caller=caller.get("callerId"),
    )


@shared_task(name=CALL_TOOL, ignore_result=True)
def call_tool(job_id: str) -> None:
    process = worker_process.current()
    job = jobs.claim(job_id, process.nodename)
    if job is None:
        log.info("job_not_claimable", job_id=job_id)  # finished, or another worker has it
        return
    _bind_log_context(job)
    process.in_flight.add(job_id)
    started = time.perf_counter()
    try:
        fields = _execute(job)
    except Exception as exc:
        log.exception("call_failed", job_id=job_id)
        fields = _failure("internal_error", describe_error(exc))
    finally:
        process.in_flight.discard(job_id)
    duration_ms = round((time.perf_counter() - started) * 1000)
    try:  # before the job is done: a caller who saw it finish gets a hit next
        cache.settle(job, fields)
    except redis.RedisError:
        log.exception("cache_write_failed", job_id=job_id)
    if jobs.finish(job_id, {**fields, "durationMs": duration_ms}, worker=process.nodename):
        record_usage(**_usage_from(job, fields, duration_ms))
    process.metrics.observe_call(
        job.get("serverSlug", ""), usage_status(fields), duration_ms / 1000
    )
    log.info("call_finished", status=fields["status"], duration_ms=duration_ms)


@shared_task(name=REFRESH_TOOLS, ignore_result=True)
def refresh_tools(server_id: str, reply: str | None = None) -> None:
    """Rediscover a server's tools on this worker's live session."""
    process = worker_process.current()
    body: dict[str, Any] = {"worker": process.nodename}
    try:
        owner = process.controller.owner_for(server_id)
        if owner is None:
            raise SessionUnavailable("the server is not connected")
        session = process.runtime.run(owner.session(10.0), 15)
        tools = process.runtime.run(list_all_tools(session), 30)
        body.update(state="ready", changes=apply_discovery(server_id, tools).as_dict())
    except Exception as exc:  # noqa: BLE001 - reported to the waiting admin, not raised
        log.warning("refresh_failed", server_id=server_id, error=describe_error(exc))
        body.update(state="error", error=describe_error(exc))
    if reply:
        control_channel.send_reply(reply, body)


def sweep_lost_jobs() -> int:
    """Settle running jobs whose worker's heartbeat is gone; returns how many were settled."""
    settled = 0
    for job_id in jobs.running_jobs(older_than_ms=SWEEP_GRACE_MS):
        job = jobs.get(job_id)
        if job is None or job.get("status") != "running" or is_alive(job.get("worker", "")):
            continue
        settled += _settle_lost(job)
    return settled


def _settle_lost(job: dict[str, Any]) -> int:
    job_id, worker, attempt = job["jobId"], job.get("worker", ""), job.get("attempt") or 1
    if job.get("retryable") and attempt < MAX_ATTEMPTS:
        if jobs.requeue(job_id, worker, attempt + 1):
            send(CALL_TOOL, [job_id], server_queue(job["serverSlug"]))
            log.warning("job_requeued", job_id=job_id, lost_worker=worker)
            return 1
        return 0
    fields = _failure("worker_lost", "The worker running this call stopped; it was not retried.")
    cache.settle(job, fields)  # releases a single-flight lock the lost call held
    if jobs.finish(job_id, fields, worker=worker):
        record_usage(**_usage_from(job, fields, 0))
        log.warning("job_lost", job_id=job_id, lost_worker=worker)
        return 1
    return 0


@shared_task(name=SWEEP, ignore_result=True)
def sweep() -> int:
    return sweep_lost_jobs()
