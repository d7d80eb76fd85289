"""Tool lookup for the hot path: `slug.tool` or a tool id → everything a call needs.

Answers from a per-process cache that is checked against a Redis version token (one GET per
lookup); every committed change to servers, tools or permissions replaces the token (SQLAlchemy
session events below), so no change is ever served stale beyond the next lookup. The permission
cache (common.permissions) is checked against the same token, read once per call.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from common.db import new_session
from common.ids import new_id
from common.models import McpServer, McpTool, McpToolPermission
from common.redis import get_redis, key

WATCHED_TABLES = {m.__tablename__ for m in (McpServer, McpTool, McpToolPermission)}


@dataclass(frozen=True)
class ToolRef:
    """A tool as a call sees it (no secrets: the server config stays with the workers)."""

    tool_id: str
    name: str
    server_id: str
    server_slug: str
    org_id: str
    is_enabled: bool
    removed: bool
    server_desired_state: str
    input_schema: dict[str, Any]
    annotations: dict[str, Any]
    cache_ttl_seconds: int | None
    definition_hash: str
    version: str = ""  # the registry token this was read under (permissions reuse it)

    @property
    def qualified_name(self) -> str:
        return f"{self.server_slug}.{self.name}"

    @property
    def retryable(self) -> bool:
        """Safe to run again after a lost worker or a broken session."""
        return bool(self.annotations.get("readOnlyHint") or self.annotations.get("idempotentHint"))


def version_key() -> str:
    return key("registry", "version")


def bump_version() -> None:
    """Make every process drop what it cached (servers, tools, permissions). After commit."""
    get_redis().set(version_key(), new_id())


def current_version() -> str:
    """The registry token. Random, not a counter: a Redis that lost the key can never bring
    back a value some process still holds a stale cache under."""
    client = get_redis()
    token = client.get(version_key())
    if token is None:
        client.set(version_key(), new_id(), nx=True)
        token = client.get(version_key())
    return token


class _Cache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version: str | None = None
        self._by_key: dict[tuple[str, str], ToolRef | None] = {}

    def lookup(self, org_id: str, ref: str, loader) -> ToolRef | None:
        current = current_version()
        with self._lock:
            if current != self._version:
                self._by_key.clear()
                self._version = current
            if (org_id, ref) in self._by_key:
                return self._by_key[(org_id, ref)]
        found = loader(org_id, ref)
        if found is not None:
            found = replace(found, version=current)
        with self._lock:
            if self._version == current:
                self._by_key[(org_id, ref)] = found
        return found


_cache = _Cache()


def _to_ref(tool: McpTool, server: McpServer) -> ToolRef:
    return ToolRef(
        tool_id=tool.id,
        name=tool.name,
        server_id=server.id,
        server_slug=server.slug,
        org_id=server.org_id,
        is_enabled=tool.is_enabled,
        removed=tool.removed_at is not None,
        server_desired_state=server.desired_state,
        input_schema=tool.input_schema or {},
        annotations=tool.annotations or {},
        cache_ttl_seconds=tool.cache_ttl_seconds,
        definition_hash=tool.definition_hash,
    )


def _load(org_id: str, ref: str) -> ToolRef | None:
    query = select(McpTool, McpServer).join(McpServer).where(McpServer.org_id == org_id)
    if "." in ref:
        slug, name = ref.split(".", 1)
        query = query.where(McpServer.slug == slug, McpTool.name == name)
    else:
        query = query.where(McpTool.id == ref)
    with new_session() as session:
        row = session.execute(query).first()
    return _to_ref(*row) if row else None


def find_tool(org_id: str, ref: str) -> ToolRef | None:
    """`ref` is `slug.tool` (split at the first dot: slugs have none) or a tool id."""
    return _cache.lookup(org_id, ref, _load)


@event.listens_for(Session, "after_flush")
def _note_registry_change(session: Session, _ctx) -> None:
    changed = (*session.new, *session.dirty, *session.deleted)
    if any(getattr(obj, "__tablename__", None) in WATCHED_TABLES for obj in changed):
        session.info["registry_changed"] = True


@event.listens_for(Session, "do_orm_execute")
def _note_bulk_change(state) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        table = getattr(state.statement, "table", None)
        if table is not None and table.name in WATCHED_TABLES:
            state.session.info["registry_changed"] = True


@event.listens_for(Session, "after_commit")
def _bump_after_commit(session: Session) -> None:
    if session.info.pop("registry_changed", False):
        bump_version()


@event.listens_for(Session, "after_rollback")
def _forget_on_rollback(session: Session) -> None:
    session.info.pop("registry_changed", None)
