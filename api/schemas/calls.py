"""Schemas of tool calls and jobs."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from common.config import get_settings

CALLER_TYPES = ("agent", "skill", "user")


class OnBehalfOfSchema(Schema):
    callerId = fields.String(required=True, validate=validate.Length(min=1, max=200))
    callerType = fields.String(required=True, validate=validate.OneOf(CALLER_TYPES))
    agentType = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_.:-]{1,64}$"))


class CallRequestSchema(Schema):
    tool = fields.String(
        validate=validate.Length(min=3, max=300), metadata={"example": "github.search"}
    )
    toolId = fields.String(validate=validate.Length(min=1, max=64))
    arguments = fields.Dict(keys=fields.String(), load_default=dict)
    mode = fields.String(load_default="sync", validate=validate.OneOf(("sync", "async")))
    waitMs = fields.Integer(strict=True, validate=validate.Range(min=0))
    timeoutMs = fields.Integer(strict=True, validate=validate.Range(min=1))
    cache = fields.String(
        load_default="use",
        validate=validate.OneOf(("use", "bypass", "refresh")),
        metadata={
            "description": "use: answer from the result cache when the tool is cacheable, "
            "and store the result; refresh: run the call and store the result; "
            "bypass: neither read nor write"
        },
    )
    onBehalfOf = fields.Nested(OnBehalfOfSchema)

    @validates_schema
    def _check(self, data: dict, **_kwargs) -> None:
        if ("tool" in data) == ("toolId" in data):
            raise ValidationError("Give exactly one of tool or toolId.", "tool")
        if "tool" in data and "." not in data["tool"]:
            raise ValidationError("Use <server-slug>.<tool-name>.", "tool")
        settings = get_settings()
        if data.get("waitMs", 0) > settings.wait_ms_max:
            raise ValidationError(f"At most {settings.wait_ms_max}.", "waitMs")
        if data.get("timeoutMs", 0) > settings.call_timeout_ms_max:
            raise ValidationError(f"At most {settings.call_timeout_ms_max}.", "timeoutMs")


class JobSchema(Schema):
    jobId = fields.String(required=True)
    status = fields.String(
        required=True, metadata={"enum": ["queued", "running", "succeeded", "failed", "timeout"]}
    )
    tool = fields.String(required=True, metadata={"description": "slug.name"})
    toolId = fields.String()
    result = fields.Dict(
        metadata={"description": "the MCP result: content, structuredContent, isError"}
    )
    error = fields.Dict(metadata={"description": "gateway failure: code and message"})
    progress = fields.Dict()
    cached = fields.Boolean(metadata={"description": "answered from the result cache"})
    attempt = fields.Integer()
    durationMs = fields.Integer(allow_none=True)
    createdAt = fields.String()
    finishedAt = fields.String(allow_none=True)
