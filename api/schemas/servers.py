"""MCP server schemas. The request schemas check the envelope; the config's shape depends on the
transport and is checked by `common.servers.prepare_config` (shared with the workers). Responses
always pass the config through `redact_config`: secrets never leave as anything but "***".
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from common.crypto import redact_config
from common.servers import SLUG_PATTERN, TRANSPORTS

CONFIG_DOC = (
    "stdio: {command, args: [str], env: {str: str}, cwd: str|null}; "
    "sse/http: {url, headers: {str: str}, timeoutMs: 1000..300000}. "
    'env and headers values are secrets: shown as "***"; send "***" back to keep a stored one.'
)

_name = validate.Length(min=1, max=200)
_slug = validate.Regexp(SLUG_PATTERN, error="Must match ^[a-z0-9][a-z0-9-]{{0,62}}$.")
_transport = validate.OneOf(TRANSPORTS)


class ServerCreateSchema(Schema):
    name = fields.String(required=True, validate=_name)
    slug = fields.String(required=True, validate=_slug, metadata={"description": "immutable"})
    transport = fields.String(required=True, validate=_transport)
    config = fields.Dict(required=True, metadata={"description": CONFIG_DOC})


class ServerUpdateSchema(Schema):
    name = fields.String(validate=_name)
    slug = fields.String(metadata={"description": "must equal the stored slug"})
    transport = fields.String(validate=_transport)
    config = fields.Dict(
        metadata={"description": CONFIG_DOC + " Required when the transport changes."}
    )


class RedactedConfig(fields.Dict):
    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return None if value is None else redact_config(value)


class ServerSchema(Schema):
    id = fields.String()
    org_id = fields.String(data_key="orgId")
    name = fields.String()
    slug = fields.String()
    transport = fields.String()
    config = RedactedConfig(metadata={"description": CONFIG_DOC})
    status = fields.String(metadata={"description": "connected, disconnected or error"})
    desired_state = fields.String(data_key="desiredState")
    last_ping_at = fields.DateTime(data_key="lastPingAt", allow_none=True)
    last_error = fields.String(data_key="lastError", allow_none=True)
    created_at = fields.DateTime(data_key="createdAt")
    updated_at = fields.DateTime(data_key="updatedAt")


class ServerDetailSchema(ServerSchema):
    tools_count = fields.Integer(data_key="toolsCount", metadata={"description": "not removed"})
    sessions = fields.List(
        fields.Dict(), metadata={"description": "per live worker: {worker, state, ...}"}
    )


class ServerPageSchema(Schema):
    items = fields.List(fields.Nested(ServerSchema))
    nextCursor = fields.String(allow_none=True)
