"""`GET /metrics`: request counts by URL rule, tool-call and cache counters, queue depth read from
the real Redis lists, worker figures from real heartbeats, METRICS_TOKEN, and gunicorn's
multiprocess mode."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from common.heartbeats import remove_heartbeat, write_heartbeat
from common.metrics import observe_cache, observe_tool_call
from common.queues import CALL_TOOL, send, server_queue
from common.redis import get_redis
from tests.factories import insert_server
from tests.harness import ROOT, Gateway, free_port, stdio_echo_config, wait_for

Labels = frozenset[tuple[str, str]]


def scrape(client, headers: dict[str, str] | None = None) -> dict[tuple[str, Labels], float]:
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.data
    assert response.content_type.startswith("text/plain")
    return parse(response.data.decode())


def parse(text: str) -> dict[tuple[str, Labels], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_requests_are_counted_by_url_rule_never_by_raw_path(client, admin_headers):
    raw_id = "srv-id-that-must-not-become-a-label"
    client.get("/health")
    client.get(f"/api/v1/servers/{raw_id}", headers=admin_headers)

    samples = scrape(client)

    rule = "/api/v1/servers/<string:server_id>"
    assert value(samples, "mcpgw_http_requests_total", route=rule, method="GET", status="404")
    assert value(samples, "mcpgw_http_requests_total", route="/health", method="GET", status="200")
    duration = value(samples, "mcpgw_http_request_duration_seconds_count", route=rule, method="GET")
    assert duration and duration >= 1
    assert not any(raw_id in v for (_, labels) in samples for _, v in labels)


def test_refused_and_unmatched_requests_are_counted_too(client):
    before = scrape(client)
    client.get("/api/v1/servers")  # no key: refused before the view runs
    client.get("/no/such/path/12345")

    after = scrape(client)

    refused = {"route": "/api/v1/servers", "method": "GET", "status": "401"}
    unmatched = {"route": "unmatched", "method": "GET", "status": "404"}
    for labels in (refused, unmatched):
        previous = value(before, "mcpgw_http_requests_total", **labels) or 0
        assert value(after, "mcpgw_http_requests_total", **labels) == previous + 1


def test_tool_call_and_cache_counters_are_exported(client):
    observe_tool_call("metrics-demo.echo", "success")
    observe_cache(hit=True)
    observe_cache(hit=False)

    samples = scrape(client)

    labels = {"tool": "metrics-demo.echo", "status": "success"}
    assert value(samples, "mcpgw_tool_calls_total", **labels) >= 1
    assert value(samples, "mcpgw_cache_requests_total", result="hit") >= 1
    assert value(samples, "mcpgw_cache_requests_total", result="miss") >= 1


@pytest.fixture
def server_queue_key(redis_prefix) -> Iterator[tuple[str, str]]:
    server = insert_server(slug="depth-demo")
    queue = server_queue(server.slug)
    yield queue, redis_prefix + queue
    get_redis().delete(redis_prefix + queue)


def test_queue_depth_is_the_length_of_each_registered_servers_queue(client, server_queue_key):
    queue, redis_key = server_queue_key
    assert value(scrape(client), "mcpgw_queue_depth", queue=queue) == 0
    get_redis().lpush(redis_key, "a", "b")
    send(CALL_TOOL, ["job-that-no-worker-takes"], queue)  # through kombu: the same list

    samples = scrape(client)

    assert value(samples, "mcpgw_queue_depth", queue=queue) == 3
    assert value(samples, "mcpgw_queue_depth", queue="mcp.control") is not None


def heartbeat_with_metrics(nodename: str) -> dict:
    return {
        "nodename": nodename,
        "queues": ["mcp.control", "mcp.server.alpha"],
        "sessions": {"alpha": {"state": "ready"}, "beta": {"state": "connecting"}},
        "metrics": {
            "inFlight": 3,
            "reconnects": {"alpha": 2},
            "calls": {"alpha": {"success": 7, "error": 1}},
            "callSeconds": {
                "alpha": {
                    "buckets": [0.001, 0.01, 0.1, 1],
                    "counts": [1, 5, 7, 8],
                    "count": 8,
                    "sum": 1.25,
                }
            },
        },
    }


@pytest.fixture
def heartbeats() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        remove_heartbeat(name)


def test_worker_figures_come_from_live_heartbeats(client, heartbeats):
    new, old = "gw-metrics-new@test", "gw-metrics-old@test"
    heartbeats.extend([new, old])
    write_heartbeat(new, heartbeat_with_metrics(new))
    write_heartbeat(old, {"nodename": old, "queues": ["mcp.control"], "sessions": {}})

    s = scrape(client)

    assert value(s, "mcpgw_worker_up", worker=new) == 1
    assert value(s, "mcpgw_worker_up", worker=old) == 1
    assert value(s, "mcpgw_worker_calls_in_flight", worker=new) == 3
    assert value(s, "mcpgw_worker_calls_in_flight", worker=old) is None  # no metrics: skipped
    assert value(s, "mcpgw_worker_session_ready", worker=new, server="alpha") == 1
    assert value(s, "mcpgw_worker_session_ready", worker=new, server="beta") == 0
    assert value(s, "mcpgw_worker_session_reconnects_total", worker=new, server="alpha") == 2
    calls = "mcpgw_worker_calls_total"
    assert value(s, calls, worker=new, server="alpha", status="success") == 7
    assert value(s, calls, worker=new, server="alpha", status="error") == 1
    hist = "mcpgw_worker_call_duration_seconds"
    assert value(s, hist + "_bucket", worker=new, server="alpha", le="0.01") == 5
    assert value(s, hist + "_bucket", worker=new, server="alpha", le="+Inf") == 8
    assert value(s, hist + "_sum", worker=new, server="alpha") == 1.25


def test_a_malformed_heartbeat_does_not_break_the_scrape(client, heartbeats):
    bad = "gw-metrics-bad@test"
    heartbeats.append(bad)
    beat = heartbeat_with_metrics(bad)
    beat["metrics"]["callSeconds"]["alpha"]["counts"] = [1]  # lengths differ
    write_heartbeat(bad, beat)

    assert value(scrape(client), "mcpgw_worker_up", worker=bad) == 1


def test_a_real_workers_calls_reach_metrics_through_its_heartbeat(
    client, admin_headers, spawn_worker
):
    worker, gateway = spawn_worker("*"), Gateway(client, admin_headers)
    gateway.register("metrics-live", "stdio", stdio_echo_config())
    assert gateway.call("metrics-live.echo", {"text": "x"}, cache="bypass").status_code == 200
    name = worker.nodename

    def counted() -> dict | None:
        s = scrape(client)
        calls = [
            v
            for (n, labels), v in s.items()
            if n == "mcpgw_worker_calls_total"
            and ("worker", name) in labels
            and ("server", "metrics-live") in labels
        ]
        return s if sum(calls) >= 1 else None  # fmt: skip

    s = wait_for(counted, 15, "the call in the worker's heartbeat metrics")
    assert value(s, "mcpgw_worker_up", worker=name) == 1
    assert value(s, "mcpgw_worker_session_ready", worker=name, server="metrics-live") == 1
    count = "mcpgw_worker_call_duration_seconds_count"
    assert value(s, count, worker=name, server="metrics-live") >= 1


@pytest.fixture
def metrics_token(settings_env) -> str:
    token = "metrics-token-for-tests"
    settings_env(METRICS_TOKEN=token)
    return token


def test_metrics_token_is_required_when_set(client, metrics_token):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": metrics_token}):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401
        assert response.json["error"]["code"] == "unauthorized"

    assert scrape(client, {"Authorization": f"Bearer {metrics_token}"})


def test_metrics_needs_no_api_key_and_is_in_openapi(client):
    assert client.get("/metrics").status_code == 200
    assert "/metrics" in client.get("/openapi.json").json["paths"]


def test_gunicorn_workers_share_one_view_of_the_counts():
    """Several gunicorn processes (gunicorn.conf.py's multiprocess mode): every scrape, whichever
    process answers it, counts all the requests."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    cmd = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-k", "gthread"]
    cmd += ["--workers", "3", "--bind", f"127.0.0.1:{port}", "api.app:create_app()"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _get(base + "/health"), 30, "gunicorn up")
        for _ in range(20):
            _get(base + "/health")
        counts = [
            value(parse(_get(base + "/metrics")), "mcpgw_http_requests_total",
                  route="/health", method="GET", status="200")
            for _ in range(6)
        ]  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(30)

    assert counts == [21] * 6


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.read().decode()
    except OSError:
        return None


def test_the_usage_backlog_is_visible_until_the_writer_catches_up(client, clean_state):
    from common.usage import record_usage

    record_usage(
        org_id="default", tool_name="echo", server_slug="demo", caller_id="c",
        caller_type="agent", agent_type="a", status="success",
    )  # fmt: skip
    assert "mcpgw_usage_backlog 1.0" in client.get("/metrics").get_data(as_text=True)
    from workers.usage_writer import flush_usage

    flush_usage()
    assert "mcpgw_usage_backlog 0.0" in client.get("/metrics").get_data(as_text=True)
