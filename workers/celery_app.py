"""The Celery app of the worker, beat and Flower processes (`celery -A workers.celery_app`).

Configuration comes from `common.queues.celery_config`, the same the API's sending client uses.
Creating the app connects to nothing; the worker runtime starts on `worker_ready`.
"""

from __future__ import annotations

import sys

from celery import Celery, signals

from common.config import ConfigError, get_settings
from common.logs import configure_logging
from common.queues import (
    CONTROL_QUEUE,
    FLUSH_USAGE,
    SCHEDULE_PINGS,
    SCHEDULE_REFRESHES,
    SWEEP,
    celery_config,
)

try:
    settings = get_settings()
except ConfigError as exc:
    sys.exit(f"configuration error: {exc}")

app = Celery("mcp-gateway", include=["workers.tasks", "workers.health", "workers.usage_writer"])
app.conf.update(celery_config(settings))
app.conf.beat_schedule = {
    "health-pings": {
        "task": SCHEDULE_PINGS,
        "schedule": float(settings.health_ping_interval_seconds),
        "options": {"queue": CONTROL_QUEUE, "expires": settings.health_ping_interval_seconds},
    },
    "tool-rediscovery": {
        "task": SCHEDULE_REFRESHES,
        "schedule": float(settings.tool_refresh_interval_seconds),
        "options": {"queue": CONTROL_QUEUE, "expires": settings.tool_refresh_interval_seconds},
    },
    "sweep-lost-jobs": {"task": SWEEP, "schedule": 5.0, "options": {"queue": CONTROL_QUEUE}},
    # Safety net for the workers' own flush threads; a stale one is dropped, not run late.
    "flush-usage": {
        "task": FLUSH_USAGE,
        "schedule": 5.0,
        "options": {"queue": CONTROL_QUEUE, "expires": 10},
    },
}
celery_app = app


# setup_logging: instead of Celery's own logging (worker, beat, Flower). celeryd_init: earlier,
# before the worker's start-up checks, which warn (running as root, say): JSON lines too.
@signals.setup_logging.connect
@signals.celeryd_init.connect
def _logging(**_kwargs) -> None:
    configure_logging(settings.log_level)


@signals.worker_ready.connect
def _start_runtime(sender, **_kwargs) -> None:
    from workers.lifecycle import start

    start(sender)


@signals.worker_shutdown.connect
def _stop_runtime(**_kwargs) -> None:
    from workers.lifecycle import stop

    stop()
