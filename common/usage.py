"""Usage records: one per finished call (success, error, timeout, denied, cache hit).

`record_usage` is the single entry point for the API and the workers. Payloads are capped at
USAGE_MAX_PAYLOAD_BYTES (the row then says `truncated`).
"""

from __future__ import annotations

import json
from typing import Any

from common.config import get_settings
from common.db import session_scope
from common.models import McpToolUsage


def cap_payload(value: Any) -> tuple[Any, bool]:
    """The value itself if its JSON fits the cap, else a truncated preview and True."""
    if value is None:
        return None, False
    text = json.dumps(value, default=str)
    limit = get_settings().usage_max_payload_bytes
    if len(text.encode()) <= limit:
        return value, False
    return {"truncated": True, "preview": text.encode()[:limit].decode(errors="ignore")}, True


def build_record(**fields: Any) -> dict[str, Any]:
    """A usage record (snake_case columns) with payloads capped."""
    record = dict(fields)
    record["input"], input_cut = cap_payload(record.get("input"))
    record["output"], output_cut = cap_payload(record.get("output"))
    record["truncated"] = input_cut or output_cut
    return record


def record_usage(**fields: Any) -> None:
    with session_scope() as session:
        session.add(McpToolUsage(**build_record(**fields)))
