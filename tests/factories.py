"""Rows inserted straight into the test database, for tests that need state without the API."""

from __future__ import annotations

from typing import Any

from common.crypto import encrypt_config
from common.db import session_scope
from common.ids import hash_api_key, new_api_key
from common.models import ApiKey, McpServer, McpTool


def insert_server(slug: str = "demo", org_id: str = "default", **fields: Any) -> McpServer:
    values: dict[str, Any] = dict(
        org_id=org_id,
        name=slug.title(),
        slug=slug,
        transport="stdio",
        config=encrypt_config({"command": "node", "args": [], "env": {}, "cwd": None}),
        status="connected",
    )
    values.update(fields)
    with session_scope() as session:
        server = McpServer(**values)
        session.add(server)
    return server


def insert_tool(server: McpServer, name: str = "echo", **fields: Any) -> McpTool:
    values: dict[str, Any] = dict(
        server_id=server.id,
        name=name,
        description=f"{name} tool",
        input_schema={"type": "object", "properties": {"text": {"type": "string"}}},
        annotations={"readOnlyHint": True},
        definition_hash="h-" + name,
    )
    values.update(fields)
    with session_scope() as session:
        tool = McpTool(**values)
        session.add(tool)
    return tool


def insert_key(role: str = "agent", org_id: str = "default", **fields: Any) -> tuple[ApiKey, str]:
    """An API key row; returns (row, plaintext key)."""
    plaintext = new_api_key()
    values: dict[str, Any] = dict(
        name=f"{role} key",
        key_hash=hash_api_key(plaintext),
        prefix=plaintext[:12],
        org_id=org_id,
        role=role,
        caller_id=f"{role}-caller",
        caller_type="agent" if role == "agent" else "user",
        agent_type="researcher" if role == "agent" else role,
    )
    values.update(fields)
    with session_scope() as session:
        row = ApiKey(**values)
        session.add(row)
    return row, plaintext


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
