"""Warm tool calls: direct through the MCP SDK vs through the gateway (scenarios 1, 2, 3, 9).

Run them with `python -m bench.run --only 1,2,3,9`. Direct: one warm SDK ClientSession to
tests/peers/echo_server.py (a stdio child of this process, or the HTTP peer the gateway also
uses). Gateway: the real API (bench.stack) and `python -m workers` processes holding their own
warm sessions to the same kind of server, called with `mode: sync` and `cache: bypass` over HTTP
keep-alive connections.

- latency (1, 9): sequential `echo` calls, direct and gateway interleaved in rounds so machine
  noise falls on both alike; p50/p99 and the difference. The servers count the MCP `initialize`
  requests they receive: the count during the measured window must be 0.
- throughput (2): calls/s with N concurrent callers for `echo` (pure overhead) and `pause` 50 ms
  (work-bound), one worker process; the gateway's CPU per call (API + worker, from /proc) against
  the MCP server's own CPU per call.
- scaling (3): saturated calls/s of a 20 ms tool with one, then two worker processes on one
  server's queue, each with a small WORKER_CONCURRENCY so the worker side is the bottleneck.
"""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import asynccontextmanager

from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from bench.common import (
    PY,
    async_rps,
    measured,
    summary,
    threaded_rps,
)
from bench.stack import Stack
from tests.harness import ECHO_SERVER, wait_for

ECHO = ("echo", {"text": "hello"})


@asynccontextmanager
async def direct_session(transport: str, url: str | None = None):
    """A warm SDK session: stdio (a fresh child) or streamable HTTP to `url`."""
    if transport == "stdio":
        opener = stdio_client(StdioServerParameters(command=PY, args=[ECHO_SERVER, "stdio"]))
    else:
        opener = streamable_http_client(url)
    async with opener as streams, ClientSession(streams[0], streams[1]) as session:
        await session.initialize()
        yield session


# -- scenario 1 (and 9) ----------------------------------------------------------------------
async def _latency_one(gw: Stack, transport: str, calls: int, warmup: int, rounds: int) -> dict:
    slug = gw.echo_server(transport)
    url = gw.http_peer().url if transport == "http" else None
    client, name = gw.client(), f"{slug}.{ECHO[0]}"
    async with direct_session(transport, url) as session:
        for _ in range(warmup):
            await session.call_tool(*ECHO)
            client.call(name, ECHO[1], cache="bypass")
        init_before = gw.initializations(slug)
        direct: list[float] = []
        gateway: list[float] = []
        per_round = max(1, calls // rounds)
        for _ in range(rounds):
            for _ in range(per_round):
                started = time.perf_counter()
                await session.call_tool(*ECHO)
                direct.append((time.perf_counter() - started) * 1000)
            for _ in range(per_round):  # blocking HTTP: the loop has nothing else to do
                started = time.perf_counter()
                client.call(name, ECHO[1], cache="bypass")
                gateway.append((time.perf_counter() - started) * 1000)
        init_after = gw.initializations(slug)
    client.close()
    d, g = summary(direct), summary(gateway)
    return {
        "direct": d,
        "gateway": g,
        "added_p50_ms": round(g["p50"] - d["p50"], 3),
        "added_p99_ms": round(g["p99"] - d["p99"], 3),
        "initialize_during_window": init_after - init_before,
        "initialize_before_window": init_before,
    }


def latency(gw: Stack, calls: int, warmup: int, rounds: int, transports=("stdio", "http")) -> dict:
    async def run() -> dict:
        return {t: await _latency_one(gw, t, calls, warmup, rounds) for t in transports}

    return asyncio.run(run())


# -- scenario 2 ------------------------------------------------------------------------------
def _gateway_callers(clients: list, name: str, args: dict):
    """`new_caller` for threaded_rps: thread i calls through `clients[i]` (keep-alive HTTP
    connections opened once, kept from the warm-up window to the measured one)."""
    lock, handed = threading.Lock(), iter(clients)

    def new_caller():
        with lock:
            client = next(handed)
        return lambda: client.call(name, args, cache="bypass")

    return new_caller


def throughput(gw: Stack, concurrencies, seconds: float, warm: float, pause_ms: int = 50) -> dict:
    """Calls/s direct (one stdio session, N coroutines) vs gateway (N threads), one worker."""
    tools = {"echo": ECHO[1], f"pause{pause_ms}": {"ms": pause_ms}}
    slug = gw.echo_server("stdio")
    workers = [gw.main_worker]
    results: dict = {}

    async def direct_all() -> dict:
        out = {}
        async with direct_session("stdio") as session:
            for label, args in tools.items():
                tool = label if label == "echo" else "pause"
                for c in concurrencies:
                    await async_rps(
                        lambda t=tool, a=args: session.call_tool(t, a), c, max(warm, 0.1)
                    )
                    rps, calls = measured(
                        await async_rps(lambda t=tool, a=args: session.call_tool(t, a), c, seconds),
                        f"direct {label}, {c} callers",
                    )
                    out[(label, c)] = {"rps": round(rps, 1), "calls": calls}
        return out

    direct = asyncio.run(direct_all())
    for label, args in tools.items():
        tool = label if label == "echo" else "pause"
        for c in concurrencies:
            clients = [gw.client() for _ in range(c)]
            name = f"{slug}.{tool}"
            if warm:  # besides each caller's first call, always made before the window
                threaded_rps(_gateway_callers(clients, name, args), c, warm)
            samples: list[dict] = []  # CPU times when the window opens and closes
            rps, calls = measured(
                threaded_rps(
                    _gateway_callers(clients, name, args),
                    c,
                    seconds,
                    probe=lambda samples=samples: samples.append(gw.cpu(workers)),
                ),
                f"gateway {label}, {c} callers",
            )
            before, after = samples
            for client in clients:
                client.close()
            used = {k: after[k] - before[k] for k in after}
            gateway = {
                "rps": round(rps, 1),
                "calls": calls,
                "cpu_ms_per_call": {
                    "api": round(used["api"] * 1000 / calls, 3),
                    "worker": round(used["worker"] * 1000 / calls, 3),
                    "gateway": round((used["api"] + used["worker"]) * 1000 / calls, 3),
                    "mcp_server": round(used["mcp_server"] * 1000 / calls, 3),
                },
            }
            results[f"{label}@{c}"] = {
                "tool": label,
                "callers": c,
                "direct": direct[(label, c)],
                "gateway": gateway,
                "ratio": round(rps / direct[(label, c)]["rps"], 3),
            }
    return results


# -- scenario 3 ------------------------------------------------------------------------------
def scaling(
    gw: Stack, callers: int, seconds: float, warm: float, concurrency: int, pause_ms: int = 20
) -> dict:
    """Saturated calls/s of `pause` with one worker process on the `scale` queue, then two.

    The `*` worker is stopped first, so only the pinned workers consume that queue; they are
    left shutting down (the stack's teardown waits for them)."""
    if gw.main_worker is not None:
        gw.main_worker.terminate()  # it shuts down while the pinned worker starts
    slug = "scale"
    first = gw.start_worker(slug, concurrency)
    gw.stop_main_worker()  # gone before `scale` exists: it never serves that queue
    gw.register(slug, "stdio")
    clients = [gw.client() for _ in range(callers)]
    name, args = f"{slug}.pause", {"ms": pause_ms}
    if warm:
        threaded_rps(_gateway_callers(clients, name, args), callers, warm)
    one, one_calls = measured(
        threaded_rps(_gateway_callers(clients, name, args), callers, seconds), "one worker"
    )

    second = gw.start_worker(slug, concurrency)
    wait_for(lambda: gw.initializations(slug) >= 2, 30, "second worker's session")
    if warm:
        threaded_rps(_gateway_callers(clients, name, args), callers, warm)
    two, two_calls = measured(
        threaded_rps(_gateway_callers(clients, name, args), callers, seconds), "two workers"
    )
    for client in clients:
        client.close()
    for proc in (first, second):
        proc.terminate()  # no waiting: the stack's teardown waits for them with the rest
    return {
        "tool_ms": pause_ms,
        "callers": callers,
        "worker_concurrency": concurrency,
        "ceiling_per_worker_rps": round(concurrency * 1000 / pause_ms, 1),
        "one_worker": {"rps": round(one, 1), "calls": one_calls},
        "two_workers": {"rps": round(two, 1), "calls": two_calls},
        "ratio": round(two / one, 3),
    }
