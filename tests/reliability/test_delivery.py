"""No call lost, none silently run twice: a worker SIGKILLed mid-call (design §4).

These wait out the dead worker's heartbeat TTL (15 s), so each takes ~20 s.
"""

from __future__ import annotations

from pathlib import Path

from common import jobs
from tests.harness import stdio_echo_config, wait_for

LOST_WITHIN_SECONDS = 40


def _charges(counter: Path) -> int:
    return sum(1 for line in counter.read_text().splitlines() if line.startswith("charge"))


def test_killed_worker_fails_a_non_idempotent_call_with_worker_lost_and_never_reruns_it(
    spawn_worker, gateway, slug, tmp_path
):
    counter = tmp_path / "count"
    counter.touch()
    doomed = spawn_worker(slug)
    gateway.register(slug, "stdio", stdio_echo_config({"COUNTER_FILE": str(counter)}))
    job_id = gateway.call(f"{slug}.charge", {"amount": 5, "seconds": 3}, mode="async").json["jobId"]
    wait_for(lambda: _charges(counter) == 1, 10, "the charge to start")
    doomed.kill()
    spawn_worker(slug)  # a survivor: its heartbeat loop runs the sweep
    job = wait_for(
        lambda: (j := gateway.job(job_id).json)["status"] != "running" and j,
        LOST_WITHIN_SECONDS,
        "the sweep to settle the job",
    )
    assert job["status"] == "failed"
    assert job["error"]["code"] == "worker_lost"
    assert _charges(counter) == 1


def test_killed_worker_reruns_a_read_only_call_once_elsewhere(
    spawn_worker, gateway, slug, tmp_path
):
    doomed = spawn_worker(slug)
    gateway.register(slug, "stdio", stdio_echo_config())
    job_id = gateway.call(f"{slug}.sleep", {"seconds": 2}, mode="async").json["jobId"]
    wait_for(lambda: gateway.job(job_id).json["status"] == "running", 10, "job running")
    doomed.kill()
    survivor = spawn_worker(slug)
    job = wait_for(
        lambda: (j := gateway.job(job_id).json)["status"] == "succeeded" and j,
        LOST_WITHIN_SECONDS,
        "the job to be rerun",
    )
    assert job["attempt"] == 2
    assert jobs.get(job_id)["worker"] == survivor.nodename


def test_two_workers_on_one_queue_both_take_work(spawn_worker, gateway, slug):
    first, second = spawn_worker(slug), spawn_worker(slug)
    gateway.register(slug, "stdio", stdio_echo_config())
    ids = [
        gateway.call(f"{slug}.sleep", {"seconds": 0.4}, mode="async", cache="bypass").json["jobId"]
        for _ in range(12)
    ]
    wait_for(lambda: all(gateway.job(i).json["status"] == "succeeded" for i in ids), 20, "all jobs")
    assert {jobs.get(i)["worker"] for i in ids} == {first.nodename, second.nodename}
