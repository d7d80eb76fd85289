"""Scheduled health: pings and tool rediscovery (design §1 beat).

Beat sends one `schedule_*` task per interval to `mcp.control`; the worker that takes it fans out
one task per connected server onto that server's queue, where a worker holding its session does
the work. A slot lock per interval makes a second beat (run by mistake) a no-op, and every fanned
out task expires after one interval, so a backed-up queue never accumulates stale pings.
"""

from __future__ import annotations

import time

from celery import shared_task
from sqlalchemy import select

from common.config import get_settings
from common.db import new_session
from common.logs import get_logger
from common.models import McpServer
from common.queues import (
    PING_SERVER,
    REFRESH_TOOLS,
    SCHEDULE_PINGS,
    SCHEDULE_REFRESHES,
    send,
    server_queue,
)
from common.redis import get_redis, key
from workers import process as worker_process
from workers.control import set_server_status
from workers.runtime import SessionUnavailable, describe_error

log = get_logger(__name__)

PING_TIMEOUT_SECONDS = 5.0


def _first_in_slot(name: str, interval: int) -> bool:
    """True for the first caller in this interval's time slot, across every beat and worker."""
    slot = int(time.time() // interval)
    return bool(get_redis().set(key("beat", name, str(slot)), "1", nx=True, ex=interval * 2))


def _connected_servers() -> list[tuple[str, str]]:
    query = select(McpServer.id, McpServer.slug).where(McpServer.desired_state == "connected")
    with new_session() as session:
        return [(row.id, row.slug) for row in session.execute(query)]


def _fan_out(task: str, interval: int) -> int:
    servers = _connected_servers()
    for server_id, slug in servers:
        send(task, [server_id], server_queue(slug), expires=interval)
    return len(servers)


@shared_task(name=SCHEDULE_PINGS, ignore_result=True)
def schedule_pings() -> int:
    interval = get_settings().health_ping_interval_seconds
    return _fan_out(PING_SERVER, interval) if _first_in_slot("pings", interval) else 0


@shared_task(name=SCHEDULE_REFRESHES, ignore_result=True)
def schedule_refreshes() -> int:
    interval = get_settings().tool_refresh_interval_seconds
    return _fan_out(REFRESH_TOOLS, interval) if _first_in_slot("refresh", interval) else 0


@shared_task(name=PING_SERVER, ignore_result=True)
def ping_server(server_id: str) -> None:
    """MCP ping on this worker's session; a failure marks it broken, so it reconnects."""
    process = worker_process.current()
    owner = process.controller.owner_for(server_id)
    if owner is None:
        return  # disconnected or deleted since the ping was scheduled
    try:
        process.runtime.run(owner.ping(PING_TIMEOUT_SECONDS), PING_TIMEOUT_SECONDS + 5)
    except (SessionUnavailable, TimeoutError) as exc:
        log.warning("ping_failed", server=owner.spec.slug, error=describe_error(exc))
        set_server_status(server_id, "error", describe_error(exc))
        return
    set_server_status(server_id, "connected")
