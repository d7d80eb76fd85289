"""One asyncio event loop per worker process, in a thread of its own, owning every MCP session.

Each server's session lives inside one long-lived *owner* task that opens and closes it (the SDK's
anyio cancel scopes require enter and exit in the same task). Celery's worker threads hand
coroutines to the loop (`Runtime.run`); many calls share one session concurrently.
A broken session is reopened by its owner with exponential backoff and jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any

import anyio
import mcp.types as mt
from mcp import ClientSession
from mcp.shared.exceptions import MCPError

from common.logs import get_logger
from workers.transports import ServerSpec, enforce_policy, open_transport

log = get_logger(__name__)

CONNECT_TIMEOUT_SECONDS = 20.0
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
RETIRE_GRACE_SECONDS = 10.0

ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]
SessionHook = Callable[["SessionOwner", list[mt.Tool]], Awaitable[None]]


class CallTimeout(Exception):
    """The server did not answer within the call's timeout (cancellation was sent)."""


class SessionUnavailable(Exception):
    """No usable session: the server is down, unreachable or the session broke mid-call."""


def backoff_delay(attempt: int) -> float:
    """Exponential backoff with full jitter in [0.5, 1.5) of the step, capped."""
    step = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempt - 1))
    return step * (0.5 + random.random())  # noqa: S311 - jitter, not security


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, MCPError):
        return exc.error.code == mt.CONNECTION_CLOSED or "session not found" in str(exc).lower()
    broken = (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, OSError)
    return isinstance(exc, broken)


class SessionOwner:
    """Holds one server's session for this process; lives on the runtime's loop."""

    def __init__(self, spec: ServerSpec, on_ready: SessionHook, on_error: SessionHook) -> None:
        self.spec = spec
        self.state = "connecting"
        self.last_error: str | None = None
        self.reconnects = 0
        self.in_flight = 0
        self.connected_at: float | None = None
        self.tools: list[mt.Tool] = []
        self._on_ready, self._on_error = on_ready, on_error
        self._session: ClientSession | None = None
        self._ready = asyncio.Event()
        # Set when a connect attempt has ended: failed, or ready *and* its tools persisted
        # (state is "ready" a little earlier, as soon as calls may use the session).
        self._settled = asyncio.Event()
        self._wake = asyncio.Event()
        self._stopping = False
        self._background: set[asyncio.Task] = set()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"owner:{spec.slug}")

    # -- lifecycle (runs inside the owner task) ------------------------------------------
    async def _run(self) -> None:
        attempt = 0
        try:
            while not self._stopping:
                try:
                    await self._hold_session()
                    attempt = 0
                    self._connecting()  # it ended (broken): a connect waits for the next one
                except Exception as exc:  # noqa: BLE001 - any failure: back off, reconnect
                    attempt += 1
                    await self._fail(exc)
                if self._stopping:
                    break
                self.reconnects += 1
                await self._sleep_or_wake(backoff_delay(attempt))
        finally:
            self.state = "closed"
            self._settled.set()

    def _connecting(self) -> None:
        self.state = "connecting"
        self._settled.clear()  # until this attempt has ended

    async def _hold_session(self) -> None:
        self._connecting()
        self._wake.clear()  # stop() sets _stopping first, so no stop request is lost here
        await asyncio.to_thread(enforce_policy, self.spec)
        async with (
            open_transport(self.spec) as (read, write),
            ClientSession(read, write, message_handler=self._on_message) as session,
        ):
            with anyio.fail_after(CONNECT_TIMEOUT_SECONDS):
                await session.initialize()
                self.tools = await list_all_tools(session)
            self._session, self.state, self.last_error = session, "ready", None
            self.connected_at = time.time()
            self._ready.set()
            await self._on_ready(self, self.tools)
            self._settled.set()
            await self._wake.wait()  # until stop() or mark_broken()
        self._forget_session()

    async def _fail(self, exc: BaseException) -> None:
        self._forget_session()
        self.state = "error"
        self.last_error = describe_error(exc)
        log.warning("session_failed", server=self.spec.slug, error=self.last_error)
        try:
            await self._on_error(self, [])
        except Exception as hook_exc:  # noqa: BLE001 - e.g. Postgres down: keep reconnecting
            log.warning("session_error_hook_failed", server=self.spec.slug, error=str(hook_exc))
        self._settled.set()

    def _forget_session(self) -> None:
        self._session = None
        self._ready.clear()

    async def _sleep_or_wake(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, Exception):
            log.warning("transport_error", server=self.spec.slug, error=describe_error(message))
        elif isinstance(message, mt.ToolListChangedNotification):
            self._spawn(self.rediscover())

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def rediscover(self) -> list[mt.Tool]:
        """List tools again on the live session and hand them to the registry hook."""
        session = await self.session(CONNECT_TIMEOUT_SECONDS)
        self.tools = await list_all_tools(session)
        await self._on_ready(self, self.tools)
        return self.tools

    # -- used by calls and the controller (on the loop) -----------------------------------
    def mark_broken(self) -> None:
        if self._session is not None:
            self._forget_session()
            self._wake.set()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        await self._task

    async def retire(self, grace: float) -> None:
        """Take no new calls, let in-flight ones finish (up to `grace` seconds), then close."""
        self._stopping = True
        deadline = time.monotonic() + grace
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self.stop()

    async def wait_settled(self, timeout: float) -> str:
        """Wait for the current connect attempt to end; returns the state."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), timeout)
        return self.state

    async def session(self, timeout: float) -> ClientSession:
        if self._stopping:
            raise SessionUnavailable("the session is closing")
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            raise SessionUnavailable(self.last_error or "the server is not connected") from None
        assert self._session is not None
        return self._session

    async def call(
        self,
        name: str,
        arguments: dict[str, Any],
        timeout: float,
        progress: ProgressFn | None = None,
    ) -> mt.CallToolResult:
        deadline = time.monotonic() + timeout
        session = await self.session(timeout)
        self.in_flight += 1
        try:
            return await session.call_tool(
                name,
                arguments,
                read_timeout_seconds=max(0.001, deadline - time.monotonic()),
                progress_callback=progress,
            )
        except MCPError as exc:
            if exc.error.code == mt.REQUEST_TIMEOUT:
                raise CallTimeout(f"no answer within {timeout:g}s") from None
            if is_connection_error(exc):
                self.mark_broken()
                raise SessionUnavailable(describe_error(exc)) from exc
            raise
        except Exception as exc:
            if is_connection_error(exc):
                self.mark_broken()
                raise SessionUnavailable(describe_error(exc)) from exc
            raise
        finally:
            self.in_flight -= 1

    async def ping(self, timeout: float) -> None:
        session = await self.session(timeout)
        try:
            with anyio.fail_after(timeout):
                await session.send_ping()
        except Exception as exc:
            self.mark_broken()
            raise SessionUnavailable(describe_error(exc)) from exc

    def describe(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "lastError": self.last_error,
            "reconnects": self.reconnects,
            "inFlight": self.in_flight,
            "configVersion": self.spec.config_version,
            "connectedAt": self.connected_at,
        }


async def list_all_tools(session: ClientSession) -> list[mt.Tool]:
    tools: list[mt.Tool] = []
    cursor: str | None = None
    while True:
        params = mt.PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await session.list_tools(params=params)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            return tools


def describe_error(exc: BaseException) -> str:
    """A one-line reason, unwrapping exception groups (anyio task groups raise them)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


class Runtime:
    """The process's event-loop thread and its session owners, keyed by server id."""

    def __init__(self, on_ready: SessionHook, on_error: SessionHook) -> None:
        self._on_ready, self._on_error = on_ready, on_error
        self.loop = asyncio.new_event_loop()
        self.owners: dict[str, SessionOwner] = {}
        self._retiring: set[asyncio.Task] = set()
        self._thread = threading.Thread(target=self.loop.run_forever, name="mcp-loop", daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float | None = None) -> Any:
        return self.submit(coro).result(timeout)

    async def ensure(self, spec: ServerSpec) -> SessionOwner:
        """An owner for `spec`. A new config opens a new session at once; the old one retires
        once its in-flight calls are done, so a config change disturbs no call."""
        owner = self.owners.get(spec.server_id)
        if owner is not None and owner.spec == spec and owner.state != "closed":
            return owner
        self.owners[spec.server_id] = SessionOwner(spec, self._on_ready, self._on_error)
        if owner is not None:
            retiring = self.loop.create_task(owner.retire(RETIRE_GRACE_SECONDS))
            self._retiring.add(retiring)
            retiring.add_done_callback(self._retiring.discard)
        return self.owners[spec.server_id]

    async def close(self, server_id: str) -> None:
        owner = self.owners.pop(server_id, None)
        if owner is not None:
            await owner.retire(RETIRE_GRACE_SECONDS)

    async def close_all(self) -> None:
        await asyncio.gather(*(self.close(sid) for sid in list(self.owners)), *self._retiring)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {owner.spec.slug: owner.describe() for owner in list(self.owners.values())}

    def shutdown(self, timeout: float = 15.0) -> None:
        try:
            self.run(self.close_all(), timeout)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
