"""Async calls (scenario 5): how fast the API accepts a call with `mode: async` (202), and how
fast `GET /api/v1/jobs/<id>` answers a poll.

Run it with `python -m bench.run --only 5`. Baselines, measured in the same rounds: a sync
`echo` call (`cache: bypass`) for the accept, and a bare Redis HGETALL of the job record from this
process (what a poll has to read) for the poll. The accepted calls still run on the worker; the
scenario polls each job once (measured), then waits until they all finished (not measured).
"""

from __future__ import annotations

import time

import redis

from bench.common import summary
from bench.stack import Stack
from tests.harness import wait_for


def async_calls(gw: Stack, calls: int, warmup: int, rounds: int = 5) -> dict:
    slug = gw.echo_server("stdio")
    echo = f"{slug}.echo"
    client = gw.client()
    store = redis.Redis.from_url(gw.env["REDIS_URL"])
    prefix = gw.env["REDIS_PREFIX"]
    for i in range(warmup):
        client.call(echo, {"text": f"warm-{i}"}, cache="bypass")
        job = client.call(echo, {"text": f"warm-{i}"}, expect=202, mode="async", cache="bypass")
        client.get(f"/api/v1/jobs/{job['jobId']}")

    accept, sync, poll, raw = [], [], [], []
    ids: list[str] = []
    per_round = max(1, calls // rounds)
    for r in range(rounds):
        for i in range(per_round):
            args = {"text": f"a-{r}-{i}"}
            started = time.perf_counter()
            job = client.call(echo, args, expect=202, mode="async", cache="bypass")
            accept.append((time.perf_counter() - started) * 1000)
            ids.append(job["jobId"])
        for _ in range(per_round):
            started = time.perf_counter()
            client.call(echo, {"text": "s"}, cache="bypass")
            sync.append((time.perf_counter() - started) * 1000)
        for job_id in ids[-per_round:]:
            started = time.perf_counter()
            client.get(f"/api/v1/jobs/{job_id}")
            poll.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            store.hgetall(f"{prefix}job:{job_id}")
            raw.append((time.perf_counter() - started) * 1000)

    def finished() -> bool:
        return all(
            client.get(f"/api/v1/jobs/{job_id}")["status"] in ("succeeded", "failed", "timeout")
            for job_id in ids[-5:]
        )

    wait_for(finished, 60, "accepted calls to finish", every=0.2)
    statuses = {client.get(f"/api/v1/jobs/{job_id}")["status"] for job_id in ids[:5]}
    client.close()
    store.close()
    return {
        "accept": summary(accept),
        "sync_call": summary(sync),
        "poll": summary(poll),
        "redis_get_job": summary(raw),
        "accepted": len(ids),
        "sample_final_statuses": sorted(statuses),
    }
