"""A SessionOwner against a real stdio MCP server: a connect waits for the tools to be stored."""

from __future__ import annotations

import asyncio
import sys

from tests.harness import stdio_echo_config
from workers.runtime import SessionOwner
from workers.transports import ServerSpec


def test_a_connect_settles_only_after_the_ready_hook_stored_the_tools(settings_env):
    settings_env(STDIO_COMMAND_ALLOWLIST=stdio_echo_config()["command"])
    stored: list[str] = []

    async def slow_store(owner: SessionOwner, tools) -> None:
        await asyncio.sleep(0.3)  # the registry write, slowed down
        stored.extend(t.name for t in tools)

    async def no_error(owner: SessionOwner, tools) -> None:
        return None

    async def scenario() -> tuple[str, list[str]]:
        spec = ServerSpec("srv", "s", "stdio", stdio_echo_config())
        owner = SessionOwner(spec, on_ready=slow_store, on_error=no_error)
        try:
            await asyncio.wait_for(owner._ready.wait(), 20)  # usable, hook still running
            assert owner.state == "ready" and not stored
            state = await owner.wait_settled(10)  # what a connect command answers after
            return state, list(stored)
        finally:
            await owner.stop()

    state, stored_when_settled = asyncio.run(scenario())
    assert state == "ready"
    assert "echo" in stored_when_settled


def test_a_failed_connect_settles_even_when_the_error_hook_fails(settings_env):
    settings_env(STDIO_COMMAND_ALLOWLIST=sys.executable)

    async def store(owner: SessionOwner, tools) -> None:
        return None

    async def broken_hook(owner: SessionOwner, tools) -> None:
        raise ConnectionError("the registry is unreachable")

    async def scenario() -> tuple[str, str | None]:
        config = {"command": sys.executable, "args": ["-c", "raise SystemExit(3)"], "env": {}}
        owner = SessionOwner(ServerSpec("srv", "s", "stdio", config), store, broken_hook)
        try:
            await asyncio.wait_for(owner._settled.wait(), 20)  # not stuck behind the hook
            return await owner.wait_settled(1), owner.last_error
        finally:
            await owner.stop()

    state, error = asyncio.run(scenario())
    assert state == "error" and error
