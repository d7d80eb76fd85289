"""Tool registry: list and read tools (any key, own org), enable/disable and cache TTL (admin).

Tools are scoped by their server's org. An agent-role key sees only the tools the permission
matrix lets its agentType call; the filter runs in SQL (`permitted_clause`), so pages stay
exact. A tool it may not call answers 404, like another org's tool: existence is not leaked.
Removed tools (no longer listed by their server) are left out of lists unless asked for.
"""

from __future__ import annotations

from typing import Any

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE
from sqlalchemy import Select, select
from sqlalchemy.orm import contains_eager

from api.auth import Caller, current_caller, require_admin
from api.context import db
from api.pagination import paginate
from api.schemas.common import GatewayErrorSchema as ErrorSchema
from api.schemas.tools import ToolListArgs, ToolPageSchema, ToolSchema, ToolUpdateSchema
from common.config import get_settings
from common.errors import NotFound
from common.models import McpServer, McpTool
from common.permissions import permitted_clause

blp = Blueprint("tools", __name__, url_prefix="/api/v1/tools", description="Tool registry")


@blp.before_request
def _admin_only_for_changes() -> None:
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        require_admin()  # before the body is parsed: non-admins learn nothing about the schema


def visible_tools(caller: Caller) -> Select:
    """The caller org's tools (server eagerly joined) that this caller may see."""
    query = (
        select(McpTool)
        .join(McpTool.server)
        .options(contains_eager(McpTool.server))
        .where(McpServer.org_id == caller.org_id)
    )
    if caller.role == "agent":
        default_allowed = get_settings().permission_default_allowed
        query = query.where(permitted_clause(caller.agent_type, default_allowed))
    return query


def _get_visible_tool(caller: Caller, tool_id: str) -> McpTool:
    tool = db().scalar(visible_tools(caller).where(McpTool.id == tool_id))
    if tool is None:
        raise NotFound(f"No tool with id {tool_id!r}.", details={"toolId": tool_id})
    return tool


@blp.route("")
class Tools(MethodView):
    @blp.arguments(ToolListArgs, location="query", unknown=RAISE)
    @blp.response(200, ToolPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Tools across the org's servers; filters `serverId`, `enabled`, `includeRemoved`."""
        query = visible_tools(current_caller())
        if args["server_id"] is not None:
            query = query.where(McpTool.server_id == args["server_id"])
        if args["enabled"] is not None:
            query = query.where(McpTool.is_enabled.is_(args["enabled"]))
        if not args["include_removed"]:
            query = query.where(McpTool.removed_at.is_(None))
        items, next_cursor = paginate(db(), query, McpTool.id, args)
        return {"items": items, "next_cursor": next_cursor}


@blp.route("/<tool_id>")
class ToolById(MethodView):
    @blp.response(200, ToolSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="No such tool in the caller's org")
    def get(self, tool_id: str) -> McpTool:
        """One tool (removed ones too), with the same visibility rule as the list."""
        return _get_visible_tool(current_caller(), tool_id)

    @blp.arguments(ToolUpdateSchema)
    @blp.response(200, ToolSchema)
    @blp.alt_response(403, schema=ErrorSchema, description="Not an admin key")
    @blp.alt_response(404, schema=ErrorSchema, description="No such tool in the caller's org")
    def put(self, changes: dict[str, Any], tool_id: str) -> McpTool:
        """Enable/disable a tool (disabledReason `admin` when disabled) or set its cache TTL."""
        tool = _get_visible_tool(current_caller(), tool_id)
        if "is_enabled" in changes:
            tool.is_enabled = changes["is_enabled"]
            tool.disabled_reason = None if tool.is_enabled else "admin"
        if "cache_ttl_seconds" in changes:
            tool.cache_ttl_seconds = changes["cache_ttl_seconds"]
        db().commit()
        return tool
