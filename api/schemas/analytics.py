"""Usage analytics schemas: the query parameters and the report.

Times are ISO 8601; one without an offset is UTC, and every time answered is UTC with `Z`.
The window is half-open, [from, to); `to` defaults to now, `from` to 24 hours before `to`.
A `+` in an offset sent unencoded arrives as a space; that is read as the `+` it was.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from marshmallow import Schema, ValidationError, fields, post_load, pre_load, validate

from common.analytics import GROUPINGS, STATUSES

DEFAULT_WINDOW = timedelta(hours=24)
_SPACED_OFFSET = re.compile(r"^(.+T[0-9:.]+) ([0-9]{2}(:?[0-9]{2})?)$")


class UtcDateTime(fields.DateTime):
    """ISO 8601 in, aware UTC out; naive input is taken as UTC."""

    default_error_messages: ClassVar[dict[str, str]] = {
        "invalid": "Not an ISO 8601 date-time (e.g. 2025-05-01T12:00:00Z)."
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)

    def _serialize(self, value: datetime | None, attr: str | None, obj: Any, **kwargs: Any):
        if value is None:
            return None
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _id_filter(name: str, max_length: int) -> fields.String:
    return fields.String(
        data_key=name, load_default=None, validate=validate.Length(min=1, max=max_length)
    )


class UsageArgs(Schema):
    start = UtcDateTime(
        data_key="from", load_default=None, metadata={"description": "default: `to` - 24 h"}
    )
    end = UtcDateTime(data_key="to", load_default=None, metadata={"description": "default: now"})
    server_id = _id_filter("serverId", 64)
    tool_id = _id_filter("toolId", 64)
    caller_id = _id_filter("callerId", 200)
    status = fields.String(
        load_default=None,
        validate=validate.OneOf(STATUSES),
        metadata={"description": "only calls that ended so"},
    )
    group_by = fields.String(
        data_key="groupBy",
        load_default="tool",
        validate=validate.OneOf(GROUPINGS),
        metadata={"description": "default tool; hour and day buckets are UTC"},
    )

    @pre_load
    def _restore_plus(self, data: Any, **_: Any) -> Any:
        if not hasattr(data, "items"):
            return data
        restored = dict(data.items())
        for name in ("from", "to"):
            value = restored.get(name)
            if isinstance(value, str) and (match := _SPACED_OFFSET.match(value.strip())):
                restored[name] = f"{match.group(1)}+{match.group(2)}"
        return restored

    @post_load
    def _window(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        end = data["end"] or datetime.now(UTC)
        try:
            start = data["start"] or end - DEFAULT_WINDOW
        except OverflowError:
            message = "Too early for the default 24-hour window before it; give from."
            raise ValidationError(message, "to") from None
        if start > end:
            raise ValidationError("from must not be after to.", "from")
        return {**data, "start": start, "end": end}


class UsageGroupSchema(Schema):
    key = fields.String(allow_none=True, metadata={"description": "id, status or bucket start"})
    label = fields.String(
        allow_none=True,
        metadata={"description": "tool: slug.name; server: slug; hour/day: bucket start"},
    )
    count = fields.Integer()
    success = fields.Integer()
    error = fields.Integer()
    timeout = fields.Integer()
    denied = fields.Integer()
    cached = fields.Integer()
    cache_hit_rate = fields.Float(data_key="cacheHitRate")
    avg_duration_ms = fields.Float(data_key="avgDurationMs")
    p50_duration_ms = fields.Float(data_key="p50DurationMs")
    p95_duration_ms = fields.Float(data_key="p95DurationMs")


class UsageReportSchema(Schema):
    group_by = fields.String(data_key="groupBy")
    start = UtcDateTime(data_key="from")
    end = UtcDateTime(data_key="to")
    groups = fields.List(fields.Nested(UsageGroupSchema))
