"""Cache-hit latency vs uncached calls through the worker, and single-flight under concurrency.

    .venv/bin/python bench/cache_latency.py [--calls 1000] [--port 3198]

The real API (gunicorn gthread, one process) and one `python -m workers` process on a scratch
database and Redis prefix, called sequentially over one HTTP keep-alive connection:
- hit: `echo` with the same arguments (answered by the API from Redis);
- miss: `echo` with fresh arguments each time (worker round trip, then the cache write);
- bypass: `echo` with `cache: bypass` (worker round trip, no cache at all);
- hit (API key): hits with an agent key (its authentication reads Redis, Postgres on a miss);
- floor: `GET /api/v1/jobs/<id>` (same HTTP, Flask and auth costs, one Redis read), for scale.
Then 16 concurrent identical calls to `sleep` (0.5 s, read-only), a few rounds: how many of
them reached the server (`cached: false` answers). Goals (issue 4): hit p50 ≤ 1.5 ms and ≥ 3 times
faster than uncached.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    post,
    register_echo,
    scratch_env,
    start_api,
    start_worker,
    summary,
)

SLUG = "bench"


class Client:
    """One keep-alive HTTP connection to the API (reopened if the server closed it idle)."""

    def __init__(self, port: int, token: str):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def _send(self, method: str, path: str, body: str | None = None) -> tuple[int, dict]:
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body, self.headers)
                response = self.conn.getresponse()
                return response.status, json.loads(response.read())
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                self.conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str) -> dict:
        status, body = self._send("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path} failed: {status} {body}")
        return body

    def call(self, tool: str, args: dict, **options) -> dict:
        body = json.dumps({"tool": f"{SLUG}.{tool}", "arguments": args, **options})
        status, job = self._send("POST", "/api/v1/tools/call", body)
        if status != 200 or job.get("status") != "succeeded":
            raise RuntimeError(f"call failed: {status} {job}")
        return job


def check(job: dict, expect_cached: bool | None) -> None:
    if expect_cached is not None and job["cached"] is not expect_cached:
        raise RuntimeError(f"expected cached={expect_cached}: {job}")


def latencies(port: int, token: str, agent_key: str, calls: int, rounds: int = 5) -> dict:
    """Every path measured in `rounds` interleaved slices, so drift in machine load (other
    processes, the usage writer's flushes) spreads over all paths alike."""
    admin, agent = Client(port, token), Client(port, agent_key)
    for i in range(50):  # warm-up: sessions, pools, registry and permission caches
        admin.call("echo", {"text": f"warm-{i}"}, cache="bypass")
    job_id = admin.call("echo", {"text": "hot"})["jobId"]
    for _ in range(50):
        agent.call("echo", {"text": "hot"})
    paths = {
        "floor": (lambda i: admin.get(f"/api/v1/jobs/{job_id}"), None),
        "hit": (lambda i: admin.call("echo", {"text": "hot"}), True),
        "hit_api_key": (lambda i: agent.call("echo", {"text": "hot"}), True),
        "miss": (lambda i: admin.call("echo", {"text": f"miss-{i}"}), False),
        "bypass": (lambda i: admin.call("echo", {"text": "hot"}, cache="bypass"), False),
    }
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for r in range(rounds):
        for name, (call, expect_cached) in paths.items():
            for i in range(r * calls // rounds, (r + 1) * calls // rounds):
                started = time.perf_counter()
                job = call(i)
                samples[name].append((time.perf_counter() - started) * 1000)
                check(job, expect_cached)
    return {name: summary(values) for name, values in samples.items()}


def single_flight(port: int, token: str, rounds: int = 3, callers: int = 16) -> list[int]:
    """Executions that reached the server per round of `callers` identical concurrent calls."""
    reached = []
    clients = [Client(port, token) for _ in range(callers)]
    for r in range(rounds):
        args = {"seconds": 0.5 + r / 100}
        with ThreadPoolExecutor(callers) as pool:
            jobs = list(pool.map(lambda c, a=args: c.call("sleep", a), clients))
        reached.append(sum(1 for job in jobs if not job["cached"]))
    return reached


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--port", type=int, default=3198)
    args = parser.parse_args()

    with scratch_env() as (env, procs):
        base = start_api(env, procs, args.port)
        start_worker(env, procs)
        token = env["GATEWAY_ADMIN_TOKEN"]
        register_echo(base, token, SLUG)
        key = post(
            base,
            "/api/v1/keys",
            {
                "name": "bench",
                "role": "agent",
                "callerId": "bench",
                "callerType": "agent",
                "agentType": "bench",
            },
            token,
        )["key"]
        report = latencies(args.port, token, key, args.calls)
        report["single_flight_16"] = single_flight(args.port, token)

    print(f"{'path':12} {'p50 ms':>8} {'p99 ms':>8} {'n':>6}")
    for path in ("floor", "hit", "hit_api_key", "miss", "bypass"):
        r = report[path]
        print(f"{path:12} {r['p50']:8.3f} {r['p99']:8.3f} {r['n']:6}")
    for uncached in ("miss", "bypass"):
        ratio = report[uncached]["p50"] / report["hit"]["p50"]
        print(f"hit is {ratio:.1f}x faster than {uncached} at p50")
    print(f"16 identical concurrent calls reached the server: {report['single_flight_16']}")
    out = Path(__file__).parent / "results" / "cache_latency.json"
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
