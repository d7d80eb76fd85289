"""Prometheus metrics (design §5 `/metrics`).

The API's own counters and histogram live in this process (or, under gunicorn with several
workers, in files under PROMETHEUS_MULTIPROC_DIR that `render()` merges: gunicorn.conf.py sets
it before any worker imports prometheus_client). Two collectors are read at scrape time: the depth
of every server queue (LLEN of kombu's Redis list) and every live worker's figures from its
heartbeat, so one scrape of any API process sees all workers, wherever they run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.utils import floatToGoString
from redis import RedisError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from common.config import get_settings
from common.db import new_session
from common.heartbeats import live_workers
from common.logs import get_logger
from common.models import McpServer
from common.queues import CONTROL_QUEUE, server_queue
from common.redis import get_redis
from common.usage import dead_letter_key, stream_key

log = get_logger(__name__)

# 1 ms .. 10 s, then 30 s and 120 s: a sync call may wait up to WAIT_MS_MAX (120 s).
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120)

HTTP_REQUESTS = Counter(
    "mcpgw_http_requests_total", "API requests answered.", ["route", "method", "status"]
)
HTTP_DURATION = Histogram(
    "mcpgw_http_request_duration_seconds",
    "API request latency.",
    ["route", "method"],
    buckets=HTTP_BUCKETS,
)
TOOL_CALLS = Counter(
    "mcpgw_tool_calls_total", "Tool calls answered by the API.", ["tool", "status"]
)
CACHE_REQUESTS = Counter("mcpgw_cache_requests_total", "Result cache lookups.", ["result"])


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(route, method, str(status)).inc()
    HTTP_DURATION.labels(route, method).observe(seconds)


def observe_tool_call(tool: str, status: str) -> None:
    """`tool` is "<slug>.<name>"; `status` the usage status (success/error/timeout/denied)."""
    TOOL_CALLS.labels(tool, status).inc()


def observe_cache(hit: bool) -> None:
    CACHE_REQUESTS.labels("hit" if hit else "miss").inc()


class QueueDepthCollector:
    """`mcpgw_queue_depth{queue}`: every registered server's queue (a queue nobody consumes
    shows its backlog) and mcp.control."""

    def collect(self) -> Iterator[Metric]:
        try:
            with new_session() as session:
                slugs = session.scalars(select(McpServer.slug).order_by(McpServer.slug)).all()
            queues = [CONTROL_QUEUE, *(server_queue(slug) for slug in slugs)]
            prefix = get_settings().redis_prefix  # kombu's global_keyprefix
            pipe = get_redis().pipeline(transaction=False)
            for queue in queues:
                pipe.llen(prefix + queue)
            depths = pipe.execute()
        except (RedisError, SQLAlchemyError):
            log.warning("queue_depth_unavailable", exc_info=True)
            return
        family = GaugeMetricFamily(
            "mcpgw_queue_depth", "Messages waiting in a queue.", labels=["queue"]
        )
        for queue, depth in zip(queues, depths, strict=True):
            family.add_metric([queue], depth)
        yield family


class UsageBacklogCollector:
    """The usage stream's backlog: records buffered but not yet in Postgres (written ones are
    deleted from the stream), and records Postgres refused for their content (dead letters).
    A growing backlog means the writer cannot reach Postgres; nothing is lost meanwhile."""

    def collect(self) -> Iterator[Metric]:
        client = get_redis()
        try:
            backlog, dead = client.xlen(stream_key()), client.xlen(dead_letter_key())
        except RedisError:
            log.warning("usage_backlog_unavailable", exc_info=True)
            return
        yield GaugeMetricFamily(
            "mcpgw_usage_backlog", "Usage records waiting to be written.", value=backlog
        )
        yield GaugeMetricFamily(
            "mcpgw_usage_dead_letters", "Usage records Postgres refused.", value=dead
        )


class WorkerCollector:
    """Worker figures from live heartbeats (`worker:<nodename>`, see workers/metrics.py)."""

    def collect(self) -> Iterator[Metric]:
        try:
            beats = live_workers()
        except RedisError:
            log.warning("worker_metrics_unavailable", exc_info=True)
            return
        w, ws = ["worker"], ["worker", "server"]
        families = {
            "up": GaugeMetricFamily("mcpgw_worker_up", "Worker with a live heartbeat.", labels=w),
            "ready": GaugeMetricFamily(
                "mcpgw_worker_session_ready", "1 if the worker's session is ready.", labels=ws
            ),
            "inFlight": GaugeMetricFamily(
                "mcpgw_worker_calls_in_flight", "Calls running on the worker.", labels=w
            ),
            "reconnects": CounterMetricFamily(
                "mcpgw_worker_session_reconnects", "Session reconnects.", labels=ws
            ),
            "calls": CounterMetricFamily(
                "mcpgw_worker_calls", "Calls executed by the worker.", labels=[*ws, "status"]
            ),
            "callSeconds": HistogramMetricFamily(
                "mcpgw_worker_call_duration_seconds", "Call latency on the worker.", labels=ws
            ),
        }
        for beat in beats:
            try:
                _add_worker(families, beat)
            except (AttributeError, KeyError, TypeError, ValueError):
                log.warning("worker_heartbeat_unreadable", nodename=beat.get("nodename"))
        yield from families.values()


def _add_worker(families: dict[str, Any], beat: dict[str, Any]) -> None:
    name = str(beat["nodename"])
    families["up"].add_metric([name], 1)
    for slug, session in (beat.get("sessions") or {}).items():
        families["ready"].add_metric([name, slug], int(session.get("state") == "ready"))
    metrics = beat.get("metrics")
    if not isinstance(metrics, dict):
        return  # a worker from before heartbeats carried metrics
    families["inFlight"].add_metric([name], metrics.get("inFlight", 0))
    for slug, count in (metrics.get("reconnects") or {}).items():
        families["reconnects"].add_metric([name, slug], count)
    for slug, by_status in (metrics.get("calls") or {}).items():
        for status, count in by_status.items():
            families["calls"].add_metric([name, slug, status], count)
    for slug, hist in (metrics.get("callSeconds") or {}).items():
        pairs = zip(hist["buckets"], hist["counts"], strict=True)  # ValueError if they differ
        buckets = [(floatToGoString(le), n) for le, n in pairs]
        buckets.append(("+Inf", hist["count"]))
        families["callSeconds"].add_metric([name, slug], buckets, sum_value=hist["sum"])


_AT_SCRAPE = CollectorRegistry()
_AT_SCRAPE.register(QueueDepthCollector())
_AT_SCRAPE.register(WorkerCollector())
_AT_SCRAPE.register(UsageBacklogCollector())


def _process_registry() -> CollectorRegistry:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # every gunicorn worker's files, live and dead
    return registry


def render() -> bytes:
    """The Prometheus text exposition of everything above."""
    return generate_latest(_process_registry()) + generate_latest(_AT_SCRAPE)
