"""A real MCP server for tests and benchmarks, built with the SDK's MCPServer.

    python tests/peers/echo_server.py stdio
    python tests/peers/echo_server.py http 8765     # streamable HTTP at /mcp
    python tests/peers/echo_server.py sse 8766      # SSE at /sse

Side effects are counted in the file named by COUNTER_FILE (one line per execution), so tests can
prove a call ran exactly once, or not at all. MCP `initialize` requests are counted in the file
named by INIT_COUNT_FILE (one line each), so the bench can prove warm calls never re-initialize.
"""

from __future__ import annotations

import asyncio
import os
import sys

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True)
mcp = MCPServer("gateway-test-peer")


def _count(event: str) -> None:
    path = os.environ.get("COUNTER_FILE")
    if path:
        with open(path, "a") as handle:
            handle.write(f"{event}\n")


async def _count_initialize(ctx, call_next):
    """Middleware (the SDK's hook around every inbound message, `initialize` included)."""
    if ctx.method == "initialize":
        with open(os.environ["INIT_COUNT_FILE"], "a") as handle:
            handle.write(f"initialize {os.getpid()}\n")
    return await call_next(ctx)


if os.environ.get("INIT_COUNT_FILE"):
    mcp.middleware.append(_count_initialize)


@mcp.tool(annotations=READ_ONLY)
def echo(text: str) -> str:
    """Return the text unchanged."""
    _count(f"echo {text}")
    return text


@mcp.tool(annotations=READ_ONLY)
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@mcp.tool(annotations=READ_ONLY)
async def sleep(seconds: float, ctx: Context) -> str:
    """Wait, reporting progress, then answer."""
    steps = 4
    for step in range(steps):
        await ctx.report_progress(step, steps, f"step {step}")
        await asyncio.sleep(seconds / steps)
    _count(f"sleep {seconds}")
    return f"slept {seconds}"


@mcp.tool(annotations=READ_ONLY)
async def pause(ms: int) -> str:
    """Wait `ms` milliseconds without progress notifications (a stand-in for real work)."""
    await asyncio.sleep(ms / 1000)
    return "ok"


@mcp.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True))
async def charge(amount: int, seconds: float = 0.0) -> str:
    """A side effect that must never run twice (counts itself, then waits)."""
    _count(f"charge {amount}")
    await asyncio.sleep(seconds)
    return f"charged {amount}"


@mcp.tool()
def fail(message: str) -> str:
    """Always raise: the result comes back with isError."""
    raise ValueError(message)


@mcp.tool()
async def grow(name: str, ctx: Context, notify: bool = True) -> str:
    """Add a tool called `name` (it echoes), then announce tools/list_changed unless told not to."""
    mcp.add_tool(lambda text: text, name=name, description=f"grown tool {name}")
    if notify:
        await ctx.session.send_tool_list_changed()
    return f"added {name}"


@mcp.tool(annotations=READ_ONLY)
def pid() -> int:
    """The server's process id (tests kill it to break a session)."""
    return os.getpid()


def main() -> None:
    transport = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if transport == "stdio":
        mcp.run()
    elif transport == "http":
        mcp.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    elif transport == "sse":
        mcp.run("sse", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        raise SystemExit(f"unknown transport {transport!r}")


if __name__ == "__main__":
    main()
