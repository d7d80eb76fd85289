"""Usage records: one per finished call (success, error, timeout, denied, cache hit).

`record_usage` is the single entry point for the API and the workers. It never touches Postgres:
the record, with its own id and timestamp taken now, is appended to the Redis stream `usage`
(design §4), and `workers.usage_writer` moves it into `mcp_tool_usage`, acknowledging only after
the insert committed. So a call never waits on, or fails because of, the database.

Before it is buffered, a record is made safe to keep: values under secret-looking keys (at any
depth) become "***", bearer tokens and gateway keys inside strings are masked, text Postgres
would refuse (NUL, lone surrogates, NaN) is replaced, and `input`/`output` are capped at
USAGE_MAX_PAYLOAD_BYTES (the row then says `truncated`).
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String

from common.config import get_settings
from common.ids import new_id
from common.models import McpToolUsage
from common.redis import get_redis, key

STREAM_FIELD = "r"  # each stream entry holds one field: the record as JSON
REDACTED = "***"
SECRET_KEY = re.compile(
    r"passw(or)?d|secret|token|api[_-]?key|authori[sz]ation|cookie|credential|private[_-]?key",
    re.IGNORECASE,
)
_SECRET_TEXT = (
    (re.compile(r"\b(bearer)\s+[A-Za-z0-9._~+/=-]{16,}", re.IGNORECASE), r"\1 " + REDACTED),
    (re.compile(r"\bmcpgw_[A-Za-z0-9_-]{16,}"), "mcpgw_" + REDACTED),
)

_COLUMNS = {column.name: column for column in McpToolUsage.__table__.columns}
_GIVEN = frozenset(_COLUMNS) - {"truncated"}  # what callers may pass (id/created_at optional)
_MAX_INT = 2**31 - 1


def stream_key() -> str:
    return key("usage")


def dead_letter_key() -> str:
    """Records Postgres refused for their content, kept for an operator (never retried)."""
    return key("usage", "dead")


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _storable(text: str) -> str:
    """Text Postgres accepts: no NUL (text and JSONB refuse it), no lone surrogates."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates → "?"
    return text


def _clean_text(text: str) -> str:
    text = _storable(text)
    if "mcpgw_" in text or "earer" in text or "EARER" in text:  # cheap test before the regexes
        for pattern, replacement in _SECRET_TEXT:
            text = pattern.sub(replacement, text)
    return text


def redact(value: Any) -> Any:
    """A copy of `value` with secrets masked and text made storable."""
    if isinstance(value, dict):
        return {
            _clean_text(str(k)): REDACTED if SECRET_KEY.search(str(k)) else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN/Infinity are not JSON
    return value


def cap_payload(value: Any, limit: int | None = None) -> tuple[Any, bool]:
    """The value itself if its JSON fits the cap, else a preview that fits and True."""
    if value is None:
        return None, False
    limit = limit or get_settings().usage_max_payload_bytes
    text = dumps(value)
    size = len(text.encode())
    if size <= limit:
        return value, False
    text = text.encode()[:limit].decode(errors="ignore")

    def capped(length: int) -> dict[str, Any]:
        return {"truncated": True, "bytes": size, "preview": text[:length]}

    low, high = 0, len(text)  # escaping lengthens the preview: the longest prefix that fits
    while low < high:
        middle = (low + high + 1) // 2
        if len(dumps(capped(middle)).encode()) <= limit:
            low = middle
        else:
            high = middle - 1
    return capped(low), True


def _column_value(name: str, value: Any) -> Any:
    column = _COLUMNS[name]
    if value is None:
        if column.nullable:
            return None
        return {"duration_ms": 0, "cached": False}.get(name, "")
    if isinstance(column.type, String):
        return _storable(str(value))[: column.type.length]
    if name == "duration_ms":
        return max(0, min(_MAX_INT, round(value)))
    if name == "cached":
        return bool(value)
    return value


def build_record(**fields: Any) -> dict[str, Any]:
    """A usage record (snake_case columns, JSON-ready): redacted, capped, stamped now."""
    unknown = set(fields) - _GIVEN
    if unknown:
        raise TypeError(f"unknown usage fields: {', '.join(sorted(unknown))}")
    record = {
        name: _column_value(name, fields.get(name))
        for name in _COLUMNS
        if name not in ("input", "output", "truncated", "created_at")
    }
    record["id"] = fields.get("id") or new_id()
    created = fields.get("created_at") or datetime.now(UTC)
    record["created_at"] = created.isoformat() if isinstance(created, datetime) else created
    record["input"], input_cut = cap_payload(redact(fields.get("input")))
    record["output"], output_cut = cap_payload(redact(fields.get("output")))
    record["truncated"] = input_cut or output_cut
    return record


def record_usage(**fields: Any) -> str:
    """Buffer one usage record in the stream; returns its id. Raises if Redis is unreachable."""
    record = build_record(**fields)
    get_redis().xadd(stream_key(), {STREAM_FIELD: dumps(record)})
    return record["id"]


def usage_status(job: dict[str, Any]) -> str:
    """A job's outcome as usage counts it: success, error (a gateway failure or the tool's own
    isError), timeout; `pending` for a job still queued or running."""
    status = job.get("status")
    if status == "succeeded":
        return "error" if (job.get("result") or {}).get("isError") else "success"
    return {"failed": "error", "timeout": "timeout"}.get(status or "", "pending")


def usage_for(job: dict[str, Any], **outcome: Any) -> dict[str, Any]:
    """`record_usage` fields for a call, from its job record (the API's or a worker's view:
    both carry the same fields), plus the outcome (status, output, duration_ms, ...)."""
    caller = job.get("caller") or {}
    return dict(
        org_id=job.get("orgId", ""),
        tool_id=job.get("toolId"),
        server_id=job.get("serverId"),
        tool_name=job.get("toolName", ""),
        server_slug=job.get("serverSlug", ""),
        job_id=job.get("jobId"),
        caller_id=caller.get("callerId", ""),
        caller_type=caller.get("callerType", ""),
        agent_type=caller.get("agentType", ""),
        input=(job.get("request") or {}).get("arguments"),
        **outcome,
    )
