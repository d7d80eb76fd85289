"""Usage analytics: counts, per-status counts, cache hit rate and duration percentiles per group,
computed in one SQL aggregate over `mcp_tool_usage` (design §5).

Always scoped to one org and a half-open time window [start, end). Usage rows carry the tool
name and server slug they were recorded with, so usage of deleted servers and tools still counts
and no join is needed. Index `ix_usage_org_created` (org_id, created_at) includes every column
the aggregate reads, so it runs as an index-only scan; the cost that remains grows with the rows
in the window (percentile_cont sorts them all).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, literal_column, select
from sqlalchemy.orm import Session

from common.models import McpToolUsage as U

GROUPINGS = ("tool", "server", "caller", "status", "hour", "day")
STATUSES = ("success", "error", "timeout", "denied")
TIME_GROUPINGS = ("hour", "day")
_KEY_COLUMNS = {"tool": U.tool_id, "server": U.server_id, "caller": U.caller_id, "status": U.status}


@dataclass(frozen=True)
class UsageQuery:
    org_id: str
    start: datetime
    end: datetime
    group_by: str = "tool"
    server_id: str | None = None
    tool_id: str | None = None
    caller_id: str | None = None
    status: str | None = None


def _key(group_by: str) -> ColumnElement:
    """What rows are grouped by: one column (or time bucket), so the sort stays cheap."""
    if group_by in TIME_GROUPINGS:
        # Literal (not bound) arguments: GROUP BY must repeat the select expression verbatim.
        unit, zone = literal_column(f"'{group_by}'"), literal_column("'UTC'")
        return func.date_trunc(unit, U.created_at, zone)
    if group_by not in _KEY_COLUMNS:
        raise ValueError(f"unknown groupBy {group_by!r}")
    # Byte order: grouping sorts every row in the window, and locale-aware comparison is slow.
    return _KEY_COLUMNS[group_by].collate("C")


def _label(query: UsageQuery, key: ColumnElement) -> ColumnElement:
    """tool → "slug.name", server → slug, as last recorded under that id: one probe per group
    into the (id, created_at) index."""
    names = {"tool": U.server_slug.concat(".").concat(U.tool_name), "server": U.server_slug}
    if query.group_by not in names:
        return key
    column = _KEY_COLUMNS[query.group_by]
    latest = select(names[query.group_by]).where(column == key.collate("default"))  # as indexed
    return latest.order_by(U.created_at.desc()).limit(1).scalar_subquery()


def _statement(query: UsageQuery) -> Select:
    key = _key(query.group_by).label("key")
    count = func.count()
    groups = select(
        key,
        count.label("count"),
        *(count.filter(U.status == status).label(status) for status in STATUSES),
        count.filter(U.cached).label("cached"),
        func.avg(U.duration_ms).label("avg"),
        func.percentile_cont(0.5).within_group(U.duration_ms).label("p50"),
        func.percentile_cont(0.95).within_group(U.duration_ms).label("p95"),
    ).where(U.org_id == query.org_id, U.created_at >= query.start, U.created_at < query.end)
    for column, value in (
        (U.server_id, query.server_id),
        (U.tool_id, query.tool_id),
        (U.caller_id, query.caller_id),
        (U.status, query.status),
    ):
        if value is not None:
            groups = groups.where(column == value)
    g = groups.group_by(key).subquery("g")
    order = [g.c.key] if query.group_by in TIME_GROUPINGS else [g.c.count.desc(), g.c.key]
    return select(g, _label(query, g.c.key).label("label")).order_by(*order)


def _ms(value: Any) -> float:
    return round(float(value or 0), 2)


def usage_groups(session: Session, query: UsageQuery) -> list[dict[str, Any]]:
    """One dict per group (snake_case), busiest first (time buckets: oldest first)."""
    groups = []
    for row in session.execute(_statement(query)):
        key, label = row.key, row.label
        if query.group_by in TIME_GROUPINGS:
            key = label = key.astimezone(UTC).isoformat().replace("+00:00", "Z")
        groups.append(
            {
                "key": key,
                "label": label,
                "count": row.count,
                **{status: getattr(row, status) for status in STATUSES},
                "cached": row.cached,
                "cache_hit_rate": round(row.cached / row.count, 4),
                "avg_duration_ms": _ms(row.avg),
                "p50_duration_ms": _ms(row.p50),
                "p95_duration_ms": _ms(row.p95),
            }
        )
    return groups
