"""Permission matrix schemas: one agentType's view, and the atomic batch of rules.

A rule names its tool by `tool` ("slug.name") or `toolId`, exactly one of them. Errors of a
rule are reported under its index (`details.fields.rules.<index>`), the same shape the view uses
for rules naming unknown tools, so a client can point at every bad rule.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.schemas.tools import StrictBoolean
from common.permissions import RULE_AGENT_TYPE_PATTERN

MAX_RULES_PER_BATCH = 1000


class FullMatch(validate.Regexp):
    """Regexp that must match the whole value (`$` alone would let a trailing newline in)."""

    def __call__(self, value: str) -> str:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


_agent_type = FullMatch(
    RULE_AGENT_TYPE_PATTERN,
    error='Must be "*" or 1-64 characters of letters, digits, "_", ".", ":" or "-".',
)


class RuleSchema(Schema):
    tool = fields.String(
        validate=FullMatch(
            r"^[a-z0-9][a-z0-9-]{0,62}\..{1,200}$", error="Must be <server-slug>.<tool-name>."
        ),
        metadata={"description": "`<server-slug>.<tool-name>`; or give toolId"},
    )
    tool_id = fields.String(data_key="toolId", validate=validate.Length(min=1, max=64))
    agent_type = fields.String(data_key="agentType", required=True, validate=_agent_type)
    allowed = StrictBoolean(
        required=True,
        allow_none=True,
        metadata={"description": "true/false sets the rule; null removes it"},
    )

    @validates_schema
    def _exactly_one_tool_reference(self, data: dict[str, Any], **_: Any) -> None:
        if ("tool" in data) == ("tool_id" in data):
            raise ValidationError("Give exactly one of tool and toolId.", "_schema")


class RuleBatchSchema(Schema):
    rules = fields.List(
        fields.Nested(RuleSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_RULES_PER_BATCH),
    )


class WrittenRuleSchema(Schema):
    tool_id = fields.String(data_key="toolId")
    tool = fields.String()
    agent_type = fields.String(data_key="agentType")
    allowed = fields.Boolean(
        allow_none=True, metadata={"description": "null: the rule was removed"}
    )


class WrittenRulesSchema(Schema):
    rules = fields.List(fields.Nested(WrittenRuleSchema))


class PermissionItemSchema(Schema):
    tool_id = fields.String(data_key="toolId")
    tool = fields.String()
    allowed = fields.Boolean()
    source = fields.String(metadata={"description": "explicit, wildcard or default"})


class AgentPermissionsSchema(Schema):
    agent_type = fields.String(data_key="agentType")
    items = fields.List(fields.Nested(PermissionItemSchema))
