"""Permission matrix (admin): one agentType's effective view, and atomic batches of rules.

PUT is all or nothing: every rule is checked first (schema, then each tool resolved in the
caller's org, then no (tool, agentType) pair twice); any bad rule → 422 naming its index and
nothing is written. The batch is upserted in one transaction, and only after it commits is the
hot-path cache invalidated, so the next call anywhere sees the new rules.
"""

from __future__ import annotations

from typing import Any

import redis
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import Select, select, tuple_
from sqlalchemy.orm import contains_eager

from api.auth import current_caller, require_admin
from api.context import db
from api.schemas.common import GatewayErrorSchema as ErrorSchema
from api.schemas.permissions import AgentPermissionsSchema, RuleBatchSchema, WrittenRulesSchema
from common.config import get_settings
from common.errors import Unprocessable
from common.logs import get_logger
from common.models import McpServer, McpTool
from common.permissions import (
    invalidate,
    is_valid_agent_type,
    load_rules_many,
    resolve,
    write_rules,
)

log = get_logger(__name__)

blp = Blueprint(
    "permissions", __name__, url_prefix="/api/v1/permissions", description="Permission matrix"
)


@blp.before_request
def _admin_only() -> None:
    require_admin()  # before the body is parsed: non-admins learn nothing about the schema


def _org_tools(org_id: str) -> Select:
    return (
        select(McpTool)
        .join(McpTool.server)
        .options(contains_eager(McpTool.server))
        .where(McpServer.org_id == org_id)
    )


def _qualified(tool: McpTool) -> str:
    return f"{tool.server.slug}.{tool.name}"


def _find_tools(org_id: str, rules: list[dict[str, Any]]) -> list[McpTool | None]:
    """The tool each rule names, or None when the caller's org has no such tool."""
    ids = {r["tool_id"] for r in rules if "tool_id" in r}
    names = {tuple(r["tool"].split(".", 1)) for r in rules if "tool" in r}
    by_id: dict[str, McpTool] = {}
    by_name: dict[tuple[str, str], McpTool] = {}
    if ids:
        by_id = {t.id: t for t in db().scalars(_org_tools(org_id).where(McpTool.id.in_(ids)))}
    if names:
        query = _org_tools(org_id).where(tuple_(McpServer.slug, McpTool.name).in_(names))
        by_name = {(t.server.slug, t.name): t for t in db().scalars(query)}
    return [
        by_id.get(r["tool_id"]) if "tool_id" in r else by_name.get(tuple(r["tool"].split(".", 1)))
        for r in rules
    ]


def _batch_errors(rules: list[dict[str, Any]], tools: list[McpTool | None]) -> dict[int, Any]:
    errors: dict[int, Any] = {}
    first_seen: dict[tuple[str, str], int] = {}
    for index, (rule, tool) in enumerate(zip(rules, tools, strict=True)):
        if tool is None:
            field, ref = (
                ("toolId", rule["tool_id"]) if "tool_id" in rule else ("tool", rule["tool"])
            )
            errors[index] = {field: [f"No tool {ref!r} in this org."]}
            continue
        pair = (tool.id, rule["agent_type"])
        if pair in first_seen:
            errors[index] = {"_schema": [f"Same tool and agentType as rule {first_seen[pair]}."]}
        else:
            first_seen[pair] = index
    return errors


def _invalidate_after_commit() -> None:
    try:
        invalidate()
    except redis.RedisError:
        # The rules are committed; cached copies expire within MAX_AGE_SECONDS regardless.
        log.exception("permission_invalidation_failed")


@blp.route("/<agent_type>")
class AgentPermissions(MethodView):
    @blp.response(200, AgentPermissionsSchema)
    @blp.alt_response(403, schema=ErrorSchema, description="Not an admin key")
    @blp.alt_response(422, schema=ErrorSchema, description="Malformed agentType")
    def get(self, agent_type: str) -> dict[str, Any]:
        """What `agent_type` may call: every current tool of the org, with the deciding rule."""
        caller = current_caller()
        if not is_valid_agent_type(agent_type):
            raise Unprocessable(
                "agentType must be '*' or match ^[A-Za-z0-9_.:-]{1,64}$.",
                details={"fields": {"agentType": ["Malformed agentType."]}},
            )
        query = _org_tools(caller.org_id).where(McpTool.removed_at.is_(None))
        tools = list(db().scalars(query.order_by(McpServer.slug, McpTool.name)))
        rules = load_rules_many(db(), [t.id for t in tools], agent_types=(agent_type, "*"))
        default_allowed = get_settings().permission_default_allowed
        items = []
        for tool in tools:
            allowed, source = resolve(rules.get(tool.id, {}), agent_type, default_allowed)
            item = {"tool_id": tool.id, "tool": _qualified(tool), "allowed": allowed}
            items.append({**item, "source": source})
        return {"agent_type": agent_type, "items": items}


@blp.route("")
class Permissions(MethodView):
    @blp.arguments(RuleBatchSchema)
    @blp.response(200, WrittenRulesSchema)
    @blp.alt_response(403, schema=ErrorSchema, description="Not an admin key")
    @blp.alt_response(422, schema=ErrorSchema, description="A bad rule; nothing was written")
    def put(self, body: dict[str, Any]) -> dict[str, Any]:
        """Set (or, with `allowed: null`, remove) rules, all or none."""
        rules = body["rules"]
        tools = _find_tools(current_caller().org_id, rules)
        errors = _batch_errors(rules, tools)
        if errors:
            raise Unprocessable(
                f"{len(errors)} rule(s) are invalid; nothing was written.",
                details={"fields": {"rules": errors}},
            )
        session = db()
        triples = [(t.id, r["agent_type"], r["allowed"]) for r, t in zip(rules, tools, strict=True)]
        write_rules(session, triples)
        session.commit()
        _invalidate_after_commit()
        written = [
            {"tool_id": t.id, "tool": _qualified(t), "agent_type": a, "allowed": v}
            for (_, a, v), t in zip(triples, tools, strict=True)
        ]
        return {"rules": written}
