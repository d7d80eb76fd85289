"""Tool registry schemas: the tool as JSON, the list filters, and the admin update body.

Bodies are strict: unknown fields, strings for booleans/integers and a missing change are 422.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.pagination import PageArgs

MAX_CACHE_TTL_SECONDS = 365 * 24 * 3600


class StrictBoolean(fields.Boolean):
    """A JSON boolean only: `"true"`, `1` or `"yes"` are not booleans in a body."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if value is True or value is False:
            return value
        raise self.make_error("invalid", input=value)


class ToolSchema(Schema):
    id = fields.String()
    server_id = fields.String(data_key="serverId")
    server = fields.String(attribute="server.slug", metadata={"description": "server slug"})
    name = fields.String()
    tool = fields.Function(
        lambda tool: f"{tool.server.slug}.{tool.name}",
        metadata={"description": "qualified name, `<server-slug>.<tool-name>`"},
    )
    description = fields.String(allow_none=True)
    input_schema = fields.Dict(data_key="inputSchema")
    output_schema = fields.Dict(data_key="outputSchema", allow_none=True)
    annotations = fields.Dict(allow_none=True)
    is_enabled = fields.Boolean(data_key="isEnabled")
    disabled_reason = fields.String(
        data_key="disabledReason",
        allow_none=True,
        metadata={"description": "admin, definition_changed, new_tool or null"},
    )
    cache_ttl_seconds = fields.Integer(
        data_key="cacheTtlSeconds",
        allow_none=True,
        metadata={"description": "null = cache policy default, 0 = never cached"},
    )
    definition_hash = fields.String(data_key="definitionHash")
    last_seen_at = fields.DateTime(data_key="lastSeenAt", allow_none=True)
    removed_at = fields.DateTime(data_key="removedAt", allow_none=True)
    created_at = fields.DateTime(data_key="createdAt")
    updated_at = fields.DateTime(data_key="updatedAt")


class ToolPageSchema(Schema):
    items = fields.List(fields.Nested(ToolSchema))
    next_cursor = fields.String(data_key="nextCursor", allow_none=True)


class ToolListArgs(PageArgs):
    server_id = fields.String(
        data_key="serverId", load_default=None, validate=validate.Length(max=64)
    )
    enabled = fields.Boolean(load_default=None)
    include_removed = fields.Boolean(data_key="includeRemoved", load_default=False)


class ToolUpdateSchema(Schema):
    is_enabled = StrictBoolean(data_key="isEnabled")
    cache_ttl_seconds = fields.Integer(
        data_key="cacheTtlSeconds",
        strict=True,
        allow_none=True,
        validate=validate.Range(min=0, max=MAX_CACHE_TTL_SECONDS),
        metadata={"description": "null = cache policy default, 0 = never cached"},
    )

    @validates_schema
    def _one_change_at_least(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError("Give isEnabled, cacheTtlSeconds or both.", "_schema")
