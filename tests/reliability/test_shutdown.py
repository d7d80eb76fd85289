"""SIGTERM on a worker: stop taking work, finish in-flight calls, close sessions and stdio
children (none orphaned), exit 0."""

from __future__ import annotations

import time

from tests.harness import process_alive, stdio_echo_config, wait_for


def test_sigterm_lets_the_in_flight_call_finish_then_exits_without_orphans(
    spawn_worker, gateway, slug
):
    worker = spawn_worker(slug)
    gateway.register(slug, "stdio", stdio_echo_config())
    child = gateway.call(f"{slug}.pid", cache="bypass").json["result"]["structuredContent"]
    job_id = gateway.call(f"{slug}.sleep", {"seconds": 2}, mode="async").json["jobId"]
    wait_for(lambda: gateway.job(job_id).json["status"] == "running", 10, "call running")
    started = time.monotonic()
    assert worker.terminate(timeout=30) == 0
    shutdown_seconds = time.monotonic() - started
    job = gateway.job(job_id).json
    assert job["status"] == "succeeded", job
    assert not process_alive(child["result"]), "the stdio server outlived its worker"
    assert shutdown_seconds < 15, shutdown_seconds
