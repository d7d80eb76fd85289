"""MCP servers: list (any key, own org) and admin CRUD.

Configs go through `common.servers.prepare_config` (shape per transport, command/URL policy,
secrets encrypted) and leave through `ServerSchema` (secrets as "***"). The slug names the
server's queue, so it is unique across the gateway and immutable; uniqueness is left to the
database constraint, so two racing registrations end in one 201 and one 409 `slug_taken`.
A change of transport or config bumps `config_version` (workers recycle older sessions).
After each commit, workers hear of the change on the `control` pub/sub channel. Another org's
server ids answer 404.
"""

from __future__ import annotations

from typing import Any

import redis
from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint
from psycopg2.errorcodes import UNIQUE_VIOLATION
from sqlalchemy import func, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.auth import current_caller, require_admin
from api.context import db
from api.pagination import PageArgs, paginate
from api.schemas.common import GatewayErrorSchema
from api.schemas.servers import (
    ServerCreateSchema,
    ServerDetailSchema,
    ServerPageSchema,
    ServerSchema,
    ServerUpdateSchema,
)
from common.crypto import decrypt_config
from common.errors import NotFound, Unprocessable
from common.heartbeats import live_workers
from common.logs import get_logger
from common.models import McpServer, McpTool
from common.servers import SlugImmutable, SlugTaken, announce_server_change, prepare_config

log = get_logger(__name__)
blp = Blueprint("servers", __name__, url_prefix="/api/v1/servers", description="MCP servers")


@blp.before_request
def _admin_only_but_listing() -> None:
    if not (request.method in ("GET", "HEAD") and request.endpoint == "servers.Servers"):
        require_admin()  # before the body is parsed: non-admins learn nothing about the schema


def own_server(server_id: str, org_id: str, for_update: bool = False) -> McpServer:
    query = select(McpServer).where(McpServer.id == server_id, McpServer.org_id == org_id)
    server = db().scalar(query.with_for_update() if for_update else query)
    if server is None:
        raise NotFound("No MCP server with this id.")
    return server


def _commit(session: Session, slug: str) -> None:
    try:
        session.commit()
    except IntegrityError as err:
        session.rollback()
        if getattr(err.orig, "pgcode", None) == UNIQUE_VIOLATION:
            raise SlugTaken(f"The slug {slug!r} is taken.", details={"slug": slug}) from None
        raise


def _sessions(slug: str) -> list[dict[str, Any]]:
    try:
        workers = live_workers()
    except redis.RedisError:
        log.warning("heartbeats_unavailable", slug=slug)
        return []
    states = [(w.get("nodename"), (w.get("sessions") or {}).get(slug)) for w in workers]
    return [{"worker": name, **state} for name, state in states if isinstance(state, dict)]


def server_details(server: McpServer) -> dict[str, Any]:
    tools = select(func.count()).where(McpTool.server_id == server.id, McpTool.removed_at.is_(None))
    columns = {attr.key: getattr(server, attr.key) for attr in inspect(server).mapper.column_attrs}
    return {**columns, "tools_count": db().scalar(tools), "sessions": _sessions(server.slug)}


def _plain(config: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return decrypt_config(config)
    except ValueError:  # stored under another SECRET_KEY: count as changed
        return None


def _apply_update(server: McpServer, data: dict[str, Any]) -> None:
    if "slug" in data and data["slug"] != server.slug:
        raise SlugImmutable("A server's slug cannot change (it names the server's queue).")
    transport = data.get("transport", server.transport)
    if transport != server.transport and "config" not in data:
        details = {"fields": {"config": ["Required when the transport changes."]}}
        raise Unprocessable("A new transport needs a new config.", details=details)
    if "name" in data:
        server.name = data["name"]
    if "config" in data:
        stored = prepare_config(transport, data["config"], previous=server.config)
        if transport != server.transport or _plain(stored) != _plain(server.config):
            server.transport, server.config = transport, stored
            server.config_version += 1


@blp.route("")
class Servers(MethodView):
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, ServerPageSchema)
    def get(self, args: dict):
        query = select(McpServer).where(McpServer.org_id == current_caller().org_id)
        items, cursor = paginate(db(), query, McpServer.id, args)
        return {"items": items, "nextCursor": cursor}

    @blp.arguments(ServerCreateSchema)
    @blp.response(201, ServerSchema)
    @blp.alt_response(409, schema=GatewayErrorSchema, description="slug_taken")
    def post(self, data: dict):
        caller = current_caller()
        config = prepare_config(data["transport"], data["config"])
        server = McpServer(**data | {"config": config}, org_id=caller.org_id)
        server.status, server.desired_state = "disconnected", "connected"
        session = db()
        session.add(server)
        _commit(session, server.slug)
        announce_server_change(server.id, "upsert")
        return server


@blp.route("/<string:server_id>")
class ServerById(MethodView):
    @blp.response(200, ServerDetailSchema)
    @blp.alt_response(404, schema=GatewayErrorSchema, description="no such server in this org")
    def get(self, server_id: str):
        return server_details(own_server(server_id, current_caller().org_id))

    @blp.arguments(ServerUpdateSchema)
    @blp.response(200, ServerSchema)
    @blp.alt_response(
        422, schema=GatewayErrorSchema, description="slug_immutable, policy, validation"
    )
    def put(self, data: dict, server_id: str):
        server = own_server(server_id, current_caller().org_id, for_update=True)
        _apply_update(server, data)
        db().commit()
        announce_server_change(server.id, "upsert")
        return server

    @blp.response(204)
    @blp.alt_response(404, schema=GatewayErrorSchema, description="no such server in this org")
    def delete(self, server_id: str):
        server = own_server(server_id, current_caller().org_id)
        session = db()
        session.delete(server)
        session.commit()
        announce_server_change(server_id, "delete")
