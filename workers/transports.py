"""Open a server's transport from its (decrypted) config: stdio, SSE or streamable HTTP.

Each opener is an async context manager yielding (read, write) streams for a ClientSession.
stdio children get the SDK's minimal environment (HOME, PATH, ...) plus the configured `env`,
never the worker's own environment (which holds DATABASE_URL and friends), and their stderr (an
MCP server's log channel) becomes `server_stderr` log events, so the worker's output stays JSON.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2
from mcp import StdioServerParameters, stdio_client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from common.config import get_settings
from common.logs import get_logger
from common.servers import check_policy, check_resolved_host

log = get_logger(__name__)

DEFAULT_HTTP_TIMEOUT_MS = 30_000
MAX_STDERR_LINE = 2000  # characters of one stderr line kept in its log event


@dataclass(frozen=True)
class ServerSpec:
    """What a worker needs to open one server's session (secrets decrypted, in memory only)."""

    server_id: str
    slug: str
    transport: str
    config: dict[str, Any] = field(repr=False)
    config_version: int = 1


def enforce_policy(spec: ServerSpec) -> None:
    """The API's command/URL policy again, at connect time: a server stored under an older,
    looser policy is refused, and a URL's host is checked where it resolves (blocking: run it
    off the event loop)."""
    settings = get_settings()
    check_policy(spec.transport, spec.config, settings)
    if spec.transport != "stdio":
        check_resolved_host(spec.config["url"], settings.allow_private_urls)


def open_transport(spec: ServerSpec) -> AbstractAsyncContextManager:
    config = spec.config
    if spec.transport == "stdio":
        params = StdioServerParameters(
            command=config["command"],
            args=list(config.get("args") or []),
            env=dict(config.get("env") or {}),
            cwd=config.get("cwd") or None,
        )
        return _stdio(params, spec.slug)
    headers = dict(config.get("headers") or {})
    timeout = (config.get("timeoutMs") or DEFAULT_HTTP_TIMEOUT_MS) / 1000
    if spec.transport == "sse":
        return sse_client(config["url"], headers=headers, timeout=timeout)
    if spec.transport == "http":
        return _streamable_http(config["url"], headers, timeout)
    raise ValueError(f"unknown transport {spec.transport!r}")


@asynccontextmanager
async def _stdio(params: StdioServerParameters, slug: str) -> AsyncIterator:
    read_fd, write_fd = os.pipe()
    reader = threading.Thread(
        target=_log_stderr, args=(read_fd, slug), name=f"stderr-{slug}", daemon=True
    )
    reader.start()
    # The child gets its own copy of the write end; ours closes with the session, so the reader
    # sees the end of the pipe once the child has gone too.
    with os.fdopen(write_fd, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as streams:
            yield streams


def _log_stderr(fd: int, slug: str) -> None:
    with open(fd, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if text := line.rstrip():
                log.info("server_stderr", server=slug, line=text[:MAX_STDERR_LINE])


@asynccontextmanager
async def _streamable_http(url: str, headers: dict[str, str], timeout: float) -> AsyncIterator:
    # streamable_http_client takes no headers: they travel on our own client, which we close.
    timeouts = httpx2.Timeout(timeout, read=None)  # calls bound their own duration
    async with (
        httpx2.AsyncClient(headers=headers, timeout=timeouts) as client,
        streamable_http_client(url, http_client=client) as streams,
    ):
        yield streams
