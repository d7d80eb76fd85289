"""Cold path (scenario 8): register + connect + discover a server through the gateway, against
the same done directly with the SDK (open the transport, `initialize`, `tools/list`).

Run it with `python -m bench.run --only 8`. For stdio the direct path spawns the echo server
itself; for streamable HTTP it connects to the running peer. Through the gateway:
`POST /api/v1/servers` (register), then `POST /api/v1/servers/<id>/connect`, which answers once a
worker (the `*` worker, already running) opened its session and listed the tools. Each server is
deleted again afterwards (not measured).
"""

from __future__ import annotations

import asyncio
import time
import urllib.request

from bench.common import summary
from bench.gateway_latency import direct_session
from bench.stack import Stack


async def _direct_ms(transport: str, url: str | None) -> tuple[float, int]:
    started = time.perf_counter()
    async with direct_session(transport, url) as session:
        tools = await session.list_tools()
        elapsed = (time.perf_counter() - started) * 1000
    return elapsed, len(tools.tools)


def _delete(gw: Stack, server_id: str) -> None:
    request = urllib.request.Request(
        f"{gw.base}/api/v1/servers/{server_id}",
        headers={"Authorization": f"Bearer {gw.token}"},
        method="DELETE",
    )
    urllib.request.urlopen(request, timeout=60).close()


def cold_path(gw: Stack, repeats: int, transports=("stdio", "http")) -> dict:
    report: dict = {}
    client = gw.client()
    for transport in transports:
        url = gw.http_peer().url if transport == "http" else None
        direct, register, connect, total = [], [], [], []
        tools_direct = tools_gateway = 0
        for i in range(repeats):
            ms, tools_direct = asyncio.run(_direct_ms(transport, url))
            direct.append(ms)

            slug = f"cold-{transport}-{i}"
            started = time.perf_counter()
            server = gw.register(slug, transport, connect=False)
            registered = time.perf_counter()
            gw.connect(server["id"])
            done = time.perf_counter()
            register.append((registered - started) * 1000)
            connect.append((done - registered) * 1000)
            total.append((done - started) * 1000)
            listed = client.get(f"/api/v1/tools?serverId={server['id']}&limit=200")
            tools_gateway = len(listed["items"])
            _delete(gw, server["id"])
            gw.servers.pop(slug, None)
        d, t = summary(direct), summary(total)
        report[transport] = {
            "direct": d,
            "gateway_register": summary(register),
            "gateway_connect_discover": summary(connect),
            "gateway_total": t,
            "added_p50_ms": round(t["p50"] - d["p50"], 3),
            "tools_direct": tools_direct,
            "tools_gateway": tools_gateway,
        }
    client.close()
    return report
