"""Keeps a worker process in step with the registry: which queues it consumes, which sessions it
holds. Reconciles at start, on every pub/sub command and at every heartbeat (5 s), so a missed
message is repaired within one beat. The heartbeat loop also runs the lost-job sweep under a
Redis lock, so delivery guarantees hold without beat.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import mcp.types as mt
import redis
from sqlalchemy import select, update

from common import control as control_channel
from common.crypto import decrypt_config
from common.db import new_session, session_scope
from common.heartbeats import HEARTBEAT_INTERVAL_SECONDS, remove_heartbeat, write_heartbeat
from common.logs import get_logger
from common.models import McpServer, utcnow
from common.queues import CONTROL_QUEUE, server_queue
from common.redis import get_redis, key
from workers.discovery import apply_discovery
from workers.process import WorkerProcess
from workers.runtime import SessionOwner
from workers.transports import ServerSpec

log = get_logger(__name__)

SETTLE_TIMEOUT_SECONDS = 25.0
SWEEP_LOCK_SECONDS = 4


def spec_of(server: McpServer) -> ServerSpec:
    return ServerSpec(
        server_id=server.id,
        slug=server.slug,
        transport=server.transport,
        config=decrypt_config(server.config),
        config_version=server.config_version,
    )


def set_server_status(server_id: str, status: str, error: str | None = None) -> None:
    """Record what a session did, unless an admin has since asked for `disconnected`."""
    values: dict[str, Any] = {"status": status, "last_error": error}
    if status == "connected":
        values["last_ping_at"] = utcnow()
    with session_scope() as session:
        session.execute(
            update(McpServer)
            .where(McpServer.id == server_id, McpServer.desired_state == "connected")
            .values(**values)
        )


class Controller:
    def __init__(self, process: WorkerProcess, queue_ops: Callable[[set[str], set[str]], None]):
        self.process = process
        self._queue_ops = queue_ops  # (add, cancel) applied on Celery's consumer
        self.queues: set[str] = {CONTROL_QUEUE} | {server_queue(s) for s in process.selection.slugs}
        self._reconcile_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.sweeper: Callable[[], None] | None = None

    # -- session hooks (called on the runtime's loop) -------------------------------------
    async def on_session_ready(self, owner: SessionOwner, tools: list[mt.Tool]) -> None:
        await asyncio.to_thread(self._record_ready, owner.spec, tools)
        await asyncio.to_thread(self.heartbeat)  # what this worker holds, visible at once

    async def on_session_error(self, owner: SessionOwner, _tools: list[mt.Tool]) -> None:
        await asyncio.to_thread(set_server_status, owner.spec.server_id, "error", owner.last_error)
        await asyncio.to_thread(self.heartbeat)

    def _record_ready(self, spec: ServerSpec, tools: list[mt.Tool]) -> None:
        changes = apply_discovery(spec.server_id, tools)
        set_server_status(spec.server_id, "connected")
        log.info("session_ready", server=spec.slug, tools=len(tools), **changes.as_dict())

    async def _reply_when_settled(self, owner: SessionOwner, reply: str) -> None:
        """Answer once the session is ready (tools persisted) or its attempt failed."""
        state = await owner.wait_settled(SETTLE_TIMEOUT_SECONDS)
        body = self._reply_body(state, owner.last_error)
        await asyncio.to_thread(control_channel.send_reply, reply, body)

    def _reply_body(self, state: str, error: str | None = None) -> dict[str, Any]:
        return {"worker": self.process.nodename, "state": state, "error": error}

    # -- reconciliation ------------------------------------------------------------------
    def _selected_servers(self, server_id: str | None = None) -> list[McpServer]:
        query = select(McpServer)
        if server_id is not None:
            query = query.where(McpServer.id == server_id)
        with new_session() as session:
            servers = list(session.scalars(query))
        return [s for s in servers if self.process.selection.includes(s.slug)]

    def reconcile(self) -> None:
        """Bring every queue and session in line with the registry."""
        with self._reconcile_lock:
            servers = self._selected_servers()
            self._sync_queues({server_queue(s.slug) for s in servers})
            wanted = {s.id: s for s in servers if s.desired_state == "connected"}
            runtime = self.process.runtime
            for server_id in set(runtime.owners) - set(wanted):
                runtime.run(runtime.close(server_id), SETTLE_TIMEOUT_SECONDS)
            for server in wanted.values():
                runtime.run(runtime.ensure(spec_of(server)), SETTLE_TIMEOUT_SECONDS)

    def _sync_queues(self, server_queues: set[str]) -> None:
        wanted = {CONTROL_QUEUE} | server_queues
        wanted |= {server_queue(s) for s in self.process.selection.slugs}
        add, cancel = wanted - self.queues, self.queues - wanted
        if add or cancel:
            self._queue_ops(add, cancel)
            self.queues = wanted
            self.heartbeat()

    def owner_for(self, server_id: str) -> SessionOwner | None:
        """This process's owner for a server, opening the session if the registry wants it."""
        owner = self.process.runtime.owners.get(server_id)
        if owner is not None:
            return owner
        servers = [s for s in self._selected_servers(server_id) if s.desired_state == "connected"]
        if not servers:
            return None
        runtime = self.process.runtime
        return runtime.run(runtime.ensure(spec_of(servers[0])), SETTLE_TIMEOUT_SECONDS)

    # -- commands from the API -------------------------------------------------------------
    def handle_command(self, message: dict[str, Any]) -> None:
        server_id, reply = message.get("serverId"), message.get("reply")
        try:
            self.reconcile()
            self.heartbeat()  # before answering: the API reads sessions from heartbeats
        except Exception:
            log.exception("reconcile_failed", server_id=server_id)
        owner = self.process.runtime.owners.get(server_id or "")
        if not reply or not self.process.selection.includes(message.get("slug") or ""):
            return  # only workers serving this server answer
        if owner is None:
            control_channel.send_reply(reply, self._reply_body("closed"))
        else:
            self.process.runtime.submit(self._reply_when_settled(owner, reply))

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(control_channel.channel())
                self.reconcile()  # anything missed while (re)subscribing
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message and message["type"] == "message":
                        self.handle_command(json.loads(message["data"]))
                pubsub.close()
            except (redis.RedisError, OSError):
                log.warning("control_channel_lost", exc_info=True)
                self._stop.wait(1.0)
            except Exception:
                log.exception("control_listener_error")
                self._stop.wait(1.0)

    # -- heartbeat -------------------------------------------------------------------------
    def heartbeat(self) -> None:
        process = self.process
        selection = process.selection
        sessions = process.runtime.snapshot()
        write_heartbeat(
            process.nodename,
            {
                "nodename": process.nodename,
                "queues": sorted(self.queues),
                "servers": "*" if selection.all_servers else sorted(selection.slugs),
                "sessions": sessions,
                "inFlight": sorted(process.in_flight),
                "metrics": process.metrics.snapshot(sessions, len(process.in_flight)),
                "at": time.time(),
            },
        )

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_INTERVAL_SECONDS):
            for step in (self.reconcile, self.heartbeat, self._sweep_once):
                try:
                    step()
                except Exception:
                    log.exception("heartbeat_step_failed", step=step.__name__)

    def _sweep_once(self) -> None:
        lock = get_redis().lock(key("lock", "sweep"), timeout=SWEEP_LOCK_SECONDS, blocking=False)
        if self.sweeper is not None and lock.acquire():
            self.sweeper()  # the lock expires by itself: one sweep per interval across workers

    # -- start / stop ------------------------------------------------------------------------
    def start(self) -> None:
        self.heartbeat()
        for target, name in ((self._listen, "mcp-control"), (self._beat, "mcp-heartbeat")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        remove_heartbeat(self.process.nodename)
