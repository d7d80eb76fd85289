"""Warm tool-call latency and throughput: direct through the MCP SDK vs through the gateway.

    .venv/bin/python bench/gateway_latency.py [--calls 500] [--seconds 5]

Direct: one warm stdio ClientSession to tests/peers/echo_server.py. Gateway: the real API
(gunicorn gthread) + one `python -m workers` process holding its own warm session to the same
server, called over HTTP keep-alive with `mode: sync`. Tools: `echo` (pure overhead) and
`pause` 50 ms (work-bound). Prints p50/p99, calls/s with 16 concurrent callers, and the ratios
the execution-plane issue sets as goals (≤ 3 ms added at p50; ≥ 0.35x / ≥ 0.9x throughput).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcp import ClientSession, StdioServerParameters, stdio_client

from bench.common import (
    ECHO_SERVER,
    PY,
    register_echo,
    scratch_env,
    start_api,
    start_worker,
    summary,
)

CONCURRENCY = 16
TOOLS = {"echo": {"text": "hello"}, "pause": {"ms": 50}}


async def _async_rps(call, seconds: float) -> float:
    """Calls per second with CONCURRENCY coroutines calling `call()` until time is up."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
    return done / (time.perf_counter() - started)


async def _direct(calls: int, seconds: float) -> dict:
    params = StdioServerParameters(command=PY, args=[ECHO_SERVER, "stdio"])
    results = {}
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        for tool, args in TOOLS.items():
            samples = []
            for _ in range(_count(tool, calls)):
                started = time.perf_counter()
                await session.call_tool(tool, args)
                samples.append((time.perf_counter() - started) * 1000)
            rps = await _async_rps(lambda t=tool, a=args: session.call_tool(t, a), seconds)
            results[tool] = {**summary(samples), "rps": round(rps, 1)}
    return results


def _count(tool: str, calls: int) -> int:
    return calls if tool == "echo" else max(50, calls // 10)


def _threaded_rps(new_caller, seconds: float) -> float:
    """Calls per second with CONCURRENCY threads, each calling its own `new_caller()`."""
    counts = [0] * CONCURRENCY
    deadline = time.perf_counter() + seconds

    def run(i: int) -> None:
        call = new_caller()
        while time.perf_counter() < deadline:
            call()
            counts[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(CONCURRENCY)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


class Client:
    """One keep-alive HTTP connection to the API."""

    def __init__(self, port: int, token: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, tool: str, args: dict) -> dict:
        body = json.dumps({"tool": tool, "arguments": args, "cache": "bypass"})
        self.conn.request("POST", "/api/v1/tools/call", body, self.headers)
        response = self.conn.getresponse()
        job = json.loads(response.read())
        if response.status != 200 or job.get("status") != "succeeded":
            raise RuntimeError(f"call failed: {response.status} {job}")
        return job


def _gateway(port: int, token: str, slug: str, calls: int, seconds: float) -> dict:
    results = {}
    for tool, args in TOOLS.items():
        name, client = f"{slug}.{tool}", Client(port, token)
        for _ in range(20):
            client.call(name, args)  # warm-up
        samples = []
        for _ in range(_count(tool, calls)):
            started = time.perf_counter()
            client.call(name, args)
            samples.append((time.perf_counter() - started) * 1000)

        def new_caller(name=name, args=args):
            mine = Client(port, token)
            return lambda: mine.call(name, args)

        rps = _threaded_rps(new_caller, seconds)
        results[tool] = {**summary(samples), "rps": round(rps, 1)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--port", type=int, default=3199)
    parser.add_argument("--api-workers", type=int, default=1)
    args = parser.parse_args()

    direct = asyncio.run(_direct(args.calls, args.seconds))
    with scratch_env() as (env, procs):
        base = start_api(env, procs, args.port, args.api_workers)
        start_worker(env, procs)
        register_echo(base, env["GATEWAY_ADMIN_TOKEN"], "bench")
        gateway = _gateway(args.port, env["GATEWAY_ADMIN_TOKEN"], "bench", args.calls, args.seconds)

    report = {"direct": direct, "gateway": gateway}
    print(f"{'tool':6} {'path':8} {'p50 ms':>8} {'p99 ms':>8} {'calls/s':>9}")
    for tool in TOOLS:
        for path in ("direct", "gateway"):
            r = report[path][tool]
            print(f"{tool:6} {path:8} {r['p50']:8.2f} {r['p99']:8.2f} {r['rps']:9.1f}")
        added = gateway[tool]["p50"] - direct[tool]["p50"]
        ratio = gateway[tool]["rps"] / direct[tool]["rps"]
        print(f"{tool:6} added p50 {added:.2f} ms, throughput {ratio:.2f}x direct")
    out = Path(__file__).parent / "results" / "gateway_latency.json"
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
