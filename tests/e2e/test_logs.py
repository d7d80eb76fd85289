"""One call, one request id: in the API's response header, the API's log line and the
worker's log line (JSON, one object per line)."""

from __future__ import annotations

import json
import logging

from tests.harness import EVERYTHING, stdio_echo_config, wait_for


def _worker_events(worker) -> list[dict]:
    events = []
    for line in worker.output().splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def _not_json_lines(worker) -> list[str]:
    return [x for x in worker.output().splitlines() if x.strip() and not x.startswith("{")]


def test_a_calls_request_id_is_in_the_api_and_the_worker_logs(spawn_worker, gateway, slug, caplog):
    worker = spawn_worker(slug, env={"LOG_LEVEL": "info"})
    gateway.register(slug, "stdio", stdio_echo_config())
    with caplog.at_level(logging.INFO, logger="api.routes.calls"):
        response = gateway.call(f"{slug}.echo", {"text": "secret-argument-value"}, cache="bypass")
    request_id = response.headers["X-Request-Id"]
    api_events = [r.msg for r in caplog.records if isinstance(r.msg, dict)]
    assert any(e.get("request_id") == request_id and e["event"] == "tool_call" for e in api_events)

    def worker_line():
        return next((e for e in _worker_events(worker) if e.get("request_id") == request_id), None)

    line = wait_for(worker_line, 10, "the worker's line for this call")
    assert line["job_id"] == response.json["jobId"]
    assert line["server"] == slug and line["tool"] == "echo"
    assert "secret-argument-value" not in worker.output()  # no argument values at info
    not_json = _not_json_lines(worker)
    assert not not_json, not_json  # start-up warnings included (Celery's as root, say)


def test_a_stdio_servers_stderr_becomes_json_events_of_the_worker(spawn_worker, gateway, slug):
    worker = spawn_worker(slug, env={"LOG_LEVEL": "info"})
    config = {"command": "node", "args": [EVERYTHING, "stdio"], "env": {}}
    gateway.register(slug, "stdio", config)  # it announces itself on stderr

    def stderr_event():
        events = _worker_events(worker)
        return next((e for e in events if e.get("event") == "server_stderr"), None)

    event = wait_for(stderr_event, 10, "the server's stderr line as a worker event")
    assert event["server"] == slug and event["line"]
    not_json = _not_json_lines(worker)
    assert not not_json, not_json
