"""Cache hits vs uncached calls, and single-flight under concurrency (scenario 4).

Run it with `python -m bench.run --only 4`. The real API and one worker (bench.stack), the
stdio echo server, called sequentially over one HTTP keep-alive connection:
- hit: `echo` with the same arguments (answered by the API from Redis);
- miss: `echo` with fresh arguments each time (worker round trip, then the cache write);
- bypass: `echo` with `cache: bypass` (worker round trip, no cache at all): the baseline;
- hit (API key): hits with an agent key (its authentication reads Redis, Postgres on a miss);
- floor: `GET /api/v1/jobs/<id>` (same HTTP, Flask and auth costs, one Redis read), for scale.
Every path is measured in interleaved rounds. Then (optionally) 16 concurrent identical calls to
`sleep` (0.5 s, read-only), a few rounds: how many of them reached the server.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from bench.common import post, summary
from bench.stack import Stack


def _check(job: dict, expect_cached: bool | None) -> None:
    if expect_cached is not None and job["cached"] is not expect_cached:
        raise RuntimeError(f"expected cached={expect_cached}: {job}")


def agent_key(gw: Stack) -> str:
    body = {
        "name": "bench",
        "role": "agent",
        "callerId": "bench",
        "callerType": "agent",
        "agentType": "bench",
    }
    return post(gw.base, "/api/v1/keys", body, gw.token)["key"]


def latencies(gw: Stack, calls: int, warmup: int, rounds: int = 5) -> dict:
    """Every path measured in `rounds` interleaved slices, so drift in machine load (other
    processes, the usage writer's flushes) spreads over all paths alike."""
    slug = gw.echo_server("stdio")
    echo = f"{slug}.echo"
    admin, agent = gw.client(), gw.client(agent_key(gw))
    for i in range(warmup):  # sessions, pools, registry and permission caches
        admin.call(echo, {"text": f"warm-{i}"}, cache="bypass")
    job_id = admin.call(echo, {"text": "hot"})["jobId"]
    for _ in range(warmup):
        agent.call(echo, {"text": "hot"})
    paths = {
        "floor": (lambda i: admin.get(f"/api/v1/jobs/{job_id}"), None),
        "hit": (lambda i: admin.call(echo, {"text": "hot"}), True),
        "hit_api_key": (lambda i: agent.call(echo, {"text": "hot"}), True),
        "miss": (lambda i: admin.call(echo, {"text": f"miss-{i}"}), False),
        "bypass": (lambda i: admin.call(echo, {"text": "hot"}, cache="bypass"), False),
    }
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for r in range(rounds):
        for name, (call, expect_cached) in paths.items():
            for i in range(r * calls // rounds, (r + 1) * calls // rounds):
                started = time.perf_counter()
                job = call(i)
                samples[name].append((time.perf_counter() - started) * 1000)
                _check(job, expect_cached)
    admin.close()
    agent.close()
    return {name: summary(values) for name, values in samples.items()}


def single_flight(gw: Stack, rounds: int = 3, callers: int = 16) -> list[int]:
    """Executions that reached the server per round of `callers` identical concurrent calls."""
    slug = gw.echo_server("stdio")
    reached = []
    clients = [gw.client() for _ in range(callers)]
    for r in range(rounds):
        args = {"seconds": 0.5 + r / 100}
        with ThreadPoolExecutor(callers) as pool:
            jobs = list(pool.map(lambda c, a=args: c.call(f"{slug}.sleep", a), clients))
        reached.append(sum(1 for job in jobs if not job["cached"]))
    for client in clients:
        client.close()
    return reached


def cache(gw: Stack, calls: int, warmup: int, rounds: int, flight_rounds: int) -> dict:
    report = latencies(gw, calls, warmup, rounds)
    report["hit_speedup_vs_bypass"] = round(report["bypass"]["p50"] / report["hit"]["p50"], 3)
    report["hit_speedup_vs_miss"] = round(report["miss"]["p50"] / report["hit"]["p50"], 3)
    if flight_rounds:
        report["single_flight_16_reached_server"] = single_flight(gw, flight_rounds)
    return report
