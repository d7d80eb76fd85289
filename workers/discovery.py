"""Tool discovery: upsert a server's listed tools into `mcp_tools`.

A tool's `definitionHash` covers what a caller relies on (description, schemas, annotations).
Admin choices (`isEnabled`, `cacheTtlSeconds`) survive rediscovery, with two policies: a changed
definition is quarantined (disabled, `definition_changed`) under TOOL_CHANGE_POLICY=quarantine,
and a tool that appears on an already discovered server follows NEW_TOOL_POLICY. Tools no longer
listed get `removedAt`. The server row is locked for the transaction, so two workers discovering
the same server at once take turns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mcp.types as mt
from sqlalchemy import select

from common.canonical import sha256_json
from common.config import get_settings
from common.db import session_scope
from common.models import McpServer, McpTool, utcnow


@dataclass
class DiscoveryResult:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "unchanged": self.unchanged,
        }


def tool_definition(tool: mt.Tool) -> dict[str, Any]:
    data = tool.model_dump(by_alias=True, exclude_none=True, mode="json")
    return {
        "name": tool.name,
        "description": data.get("description"),
        "inputSchema": data.get("inputSchema") or {"type": "object"},
        "outputSchema": data.get("outputSchema"),
        "annotations": data.get("annotations") or {},
    }


def _apply(row: McpTool, definition: dict[str, Any], digest: str) -> None:
    row.description = definition["description"]
    row.input_schema = definition["inputSchema"]
    row.output_schema = definition["outputSchema"]
    row.annotations = definition["annotations"]
    row.definition_hash = digest


def _new_tool(server_id: str, definition: dict, digest: str, first: bool) -> McpTool:
    enabled = first or get_settings().new_tool_policy == "enable"
    row = McpTool(server_id=server_id, name=definition["name"], is_enabled=enabled)
    row.disabled_reason = None if enabled else "new_tool"
    _apply(row, definition, digest)
    return row


def _update_tool(row: McpTool, definition: dict, digest: str, result: DiscoveryResult) -> None:
    row.removed_at = None
    if row.definition_hash == digest:
        result.unchanged += 1
        return
    if row.definition_hash and get_settings().tool_change_policy == "quarantine":
        row.is_enabled, row.disabled_reason = False, "definition_changed"
    _apply(row, definition, digest)
    result.changed.append(row.name)


def apply_discovery(server_id: str, tools: list[mt.Tool]) -> DiscoveryResult:
    result = DiscoveryResult()
    now = utcnow()
    with session_scope() as session:
        server = session.scalar(
            select(McpServer).where(McpServer.id == server_id).with_for_update()
        )
        if server is None:
            return result
        existing = {
            t.name: t for t in session.scalars(select(McpTool).filter_by(server_id=server_id))
        }
        first = not existing
        listed = set()
        for tool in tools:
            definition = tool_definition(tool)
            digest = sha256_json(definition)
            listed.add(tool.name)
            row = existing.get(tool.name)
            if row is None:
                row = _new_tool(server_id, definition, digest, first)
                session.add(row)
                result.added.append(tool.name)
            else:
                _update_tool(row, definition, digest, result)
            row.last_seen_at = now
        for name, row in existing.items():
            if name not in listed and row.removed_at is None:
                row.removed_at = now
                result.removed.append(name)
    return result
