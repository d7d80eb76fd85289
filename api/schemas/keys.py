"""API key schemas. Minting defaults: callerId = name; callerType = `agent` for agent keys, `user`
otherwise; agentType = the role. The key itself appears only in the mint response.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, post_load, validate

ROLES = ("admin", "service", "agent")
CALLER_TYPES = ("agent", "skill", "user")
# "*" is the permissions wildcard, so an agentType is a plain identifier.
AGENT_TYPE = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z", error="Not a valid agentType.")


class KeyCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    callerId = fields.String(
        validate=validate.Length(min=1, max=200), metadata={"description": "default: name"}
    )
    callerType = fields.String(
        validate=validate.OneOf(CALLER_TYPES),
        metadata={"description": "default: agent for role agent, else user"},
    )
    agentType = fields.String(validate=AGENT_TYPE, metadata={"description": "default: the role"})

    @post_load
    def fill_defaults(self, data: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
        return {
            "name": data["name"],
            "role": data["role"],
            "caller_id": data.get("callerId", data["name"]),
            "caller_type": data.get("callerType", "agent" if data["role"] == "agent" else "user"),
            "agent_type": data.get("agentType", data["role"]),
        }


class KeyBaseSchema(Schema):
    id = fields.String()
    name = fields.String()
    role = fields.String()
    prefix = fields.String(metadata={"description": "first characters of the key, for display"})
    caller_id = fields.String(data_key="callerId")
    caller_type = fields.String(data_key="callerType")
    agent_type = fields.String(data_key="agentType")
    created_at = fields.DateTime(data_key="createdAt")


class KeySchema(KeyBaseSchema):
    revoked_at = fields.DateTime(data_key="revokedAt", allow_none=True)


class KeyCreatedSchema(KeyBaseSchema):
    key = fields.String(metadata={"description": "the API key; shown only in this response"})


class KeyPageSchema(Schema):
    items = fields.List(fields.Nested(KeySchema))
    nextCursor = fields.String(allow_none=True)
