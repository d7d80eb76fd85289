"""Queue and task names, and the Celery configuration both sides share.

This module is the only contract between `api` and `workers`: the API sends tasks *by name*
(`send_task`) with a client built here, so it never imports the worker code.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from celery import Celery

from common import broker  # noqa: F401 - registers the redis:// transport (common/broker.py)
from common.config import Settings, get_settings

CONTROL_QUEUE = "mcp.control"
SERVER_QUEUE_PREFIX = "mcp.server."

CALL_TOOL = "mcp.call_tool"
REFRESH_TOOLS = "mcp.refresh_tools"
PING_SERVER = "mcp.ping_server"
SWEEP = "mcp.sweep"
FLUSH_USAGE = "mcp.flush_usage"
SCHEDULE_PINGS = "mcp.schedule_pings"
SCHEDULE_REFRESHES = "mcp.schedule_refreshes"


def server_queue(slug: str) -> str:
    return SERVER_QUEUE_PREFIX + slug


def celery_config(settings: Settings) -> dict[str, Any]:
    # Unacked messages come back only after visibility_timeout: keep it above the longest call
    # so the broker never re-runs a call behind the sweep's back (design §4).
    visibility = settings.call_timeout_ms_max // 1000 + 600
    prefixed = {"global_keyprefix": settings.redis_prefix}
    return {
        "broker_url": settings.redis_url,
        "broker_transport_options": {**prefixed, "visibility_timeout": visibility},
        "broker_connection_retry_on_startup": True,
        "result_backend": settings.redis_url,
        "result_backend_transport_options": prefixed,
        "result_expires": settings.job_ttl_seconds,
        "task_ignore_result": True,
        "task_default_queue": CONTROL_QUEUE,
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_prefetch_multiplier": 1,
        "worker_disable_rate_limits": True,
        # Task events feed Flower's task list (args are job ids: `argsrepr`, see `send`).
        "worker_send_task_events": settings.celery_task_events,
        # Flower lists tasks from the workers' events; a "sent" event from the API would only
        # add a publish to every call's critical path.
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "timezone": "UTC",
    }


@cache
def _client(settings: Settings) -> Celery:
    app = Celery("mcp-gateway-client")
    app.conf.update(celery_config(settings))
    return app


def celery_client() -> Celery:
    """A Celery app used only to send tasks by name (the API's side of the queue)."""
    return _client(get_settings())


def send(
    task: str, args: list[Any], queue: str, argsrepr: str | None = None, **options: Any
) -> None:
    """Enqueue `task`; `argsrepr` is what Flower shows (never secrets or payloads)."""
    # ignore_result: the sender does not know the task, so Celery would otherwise SUBSCRIBE to
    # a result channel on every send (the job record is our result store, design §4).
    celery_client().send_task(
        task,
        args=args,
        queue=queue,
        argsrepr=argsrepr or repr(args),
        ignore_result=True,
        **options,
    )
