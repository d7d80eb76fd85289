"""Usage analytics: counts, per-status counts, cache hit rate and duration percentiles per group
(design §5). Always scoped to one org and a half-open time window [start, end).

Two paths, the same answer shape:

- Raw (exact): one SQL aggregate over `mcp_tool_usage` with `percentile_cont`. Usage rows carry
  the tool name and server slug they were recorded with, so usage of deleted servers and tools
  still counts and no join is needed. Index `ix_usage_org_created` (org_id, created_at) includes
  every column the aggregate reads (an index-only scan); the cost grows with the rows in the
  window (percentile_cont sorts them all): about 1 s for 900,000 rows. Used for windows of at
  most RAW_MAX_ROWS rows and for every filtered query.
- Rollup (wide windows, no filter): sums `mcp_usage_rollup` (migration 0003: per UTC day for
  tool/server/caller/status, per UTC hour for hour/day groupings, kept in step with the usage
  table by triggers) for the whole days (hours) inside the window, plus the raw rows of the
  partial ones at its edges. Counts, statuses, cached and the average are exact. Percentiles
  come from duration histograms (one bucket per ms below 20 ms, then 5 % wide buckets), with
  percentile_cont's interpolation between the two ranks around the fraction; each rank's value
  is its bucket's geometric midpoint, so a percentile is within ROLLUP_MAX_ERROR (2.47 %) of
  percentile_cont's, and exact when the durations it falls between are under 20 ms. This is
  the one departure from "percentile_cont in SQL": the percentile is computed here, in Python,
  from the histogram the SQL sums.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import accumulate
from typing import Any

from sqlalchemy import ColumnElement, Select, func, literal_column, select, union_all, values
from sqlalchemy import String as SqlString
from sqlalchemy.orm import Session
from sqlalchemy.sql import column

from common.models import McpToolUsage as U
from common.models import McpUsageRollup as R

GROUPINGS = ("tool", "server", "caller", "status", "hour", "day")
STATUSES = ("success", "error", "timeout", "denied")
TIME_GROUPINGS = ("hour", "day")
_KEY_COLUMNS = {"tool": U.tool_id, "server": U.server_id, "caller": U.caller_id, "status": U.status}

# Above this many rows in the window (and with no filter), the rollup answers: the raw aggregate
# costs about 1 ms per 1,000 rows, the rollup a few tens of ms for any window.
RAW_MAX_ROWS = 100_000
# Histogram buckets, as migration 0003's mcp_usage_bucket(duration_ms) (a test checks they agree).
ROLLUP_EXACT_BELOW = 20
ROLLUP_RATIO = 1.05
ROLLUP_MAX_ERROR = math.sqrt(ROLLUP_RATIO) - 1  # relative, of a percentile from the rollup
_NULLABLE_KEYS = ("tool", "server")  # a NULL id is stored in the rollup as ''


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

    @property
    def filtered(self) -> bool:
        return any(
            v is not None for v in (self.server_id, self.tool_id, self.caller_id, self.status)
        )


def usage_groups(session: Session, query: UsageQuery) -> list[dict[str, Any]]:
    """One dict per group (snake_case), busiest first (time buckets: oldest first)."""
    plan = _rollup_plan(session, query)
    if plan is None:
        return _raw_groups(session, query)
    return _rollup_groups(session, query, plan)


# --- raw path ----------------------------------------------------------------------------------


def _key(group_by: str) -> ColumnElement:
    """What rows are grouped by: one column (or time bucket), so the sort stays cheap."""
    if group_by in TIME_GROUPINGS:
        # Literal (not bound) arguments: GROUP BY must repeat the select expression verbatim.
        return _trunc(group_by, U.created_at)
    if group_by not in _KEY_COLUMNS:
        raise ValueError(f"unknown groupBy {group_by!r}")
    # Byte order: grouping sorts every row in the window, and locale-aware comparison is slow.
    return _KEY_COLUMNS[group_by].collate("C")


def _trunc(unit: str, moment: ColumnElement) -> ColumnElement:
    return func.date_trunc(literal_column(f"'{unit}'"), moment, literal_column("'UTC'"))


def _label(group_by: str, key: ColumnElement) -> ColumnElement:
    """tool → "slug.name", server → slug, as last recorded under that id: one probe per group
    into the (id, created_at) index."""
    names = {"tool": U.server_slug.concat(".").concat(U.tool_name), "server": U.server_slug}
    if group_by not in names:
        return key
    column = _KEY_COLUMNS[group_by]
    latest = select(names[group_by]).where(column == key.collate("default"))  # as indexed
    return latest.order_by(U.created_at.desc()).limit(1).scalar_subquery()


def _filtered(statement: Select, query: UsageQuery) -> Select:
    for column_, value in (
        (U.server_id, query.server_id),
        (U.tool_id, query.tool_id),
        (U.caller_id, query.caller_id),
        (U.status, query.status),
    ):
        if value is not None:
            statement = statement.where(column_ == value)
    return statement


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
    g = _filtered(groups, query).group_by(key).subquery("g")
    order = [g.c.key] if query.group_by in TIME_GROUPINGS else [g.c.count.desc(), g.c.key]
    return select(g, _label(query.group_by, g.c.key).label("label")).order_by(*order)


def _raw_groups(session: Session, query: UsageQuery) -> list[dict[str, Any]]:
    groups = []
    for row in session.execute(_statement(query)):
        counts = {name: getattr(row, name) for name in ("count", *STATUSES, "cached")}
        groups.append(
            _group(query.group_by, row.key, row.label, counts, row.avg, (row.p50, row.p95))
        )
    return groups


def _group(
    group_by: str, key: Any, label: Any, counts: dict[str, int], avg: Any, pcts: tuple
) -> dict[str, Any]:
    if group_by in TIME_GROUPINGS:
        key = label = key.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return {
        "key": key,
        "label": label,
        **counts,
        "cache_hit_rate": round(counts["cached"] / counts["count"], 4),
        "avg_duration_ms": _ms(avg),
        "p50_duration_ms": _ms(pcts[0]),
        "p95_duration_ms": _ms(pcts[1]),
    }


def _ms(value: Any) -> float:
    return round(float(value or 0), 2)


# --- rollup path -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    dim: str  # the rollup's dimension: the grouping, or "all" for hour/day
    start: datetime  # [start, end): the whole rollup periods inside the window
    end: datetime
    width: int  # the longest histogram among those rows


@dataclass
class _Acc:
    """One group's sums so far: counts, duration sum, histogram (index = bucket)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTS, 0))
    duration_sum: int = 0
    histogram: list[int] = field(default_factory=list)

    def add_counts(self, row: Any) -> None:
        for name in _COUNTS:
            self.counts[name] += int(getattr(row, name))  # sum(bigint) is numeric
        self.duration_sum += int(row.duration_sum)

    def add_buckets(self, buckets: Iterable[int], ns: Iterable[int]) -> None:
        for bucket, n in zip(buckets, ns, strict=True):
            if bucket >= len(self.histogram):
                self.histogram.extend([0] * (bucket + 1 - len(self.histogram)))
            self.histogram[bucket] += n


_COUNTS = ("count", *STATUSES, "cached")


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _floor(moment: datetime, grain: str) -> datetime:
    moment = _utc(moment).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if grain == "day" else moment


def _ceil(moment: datetime, grain: str) -> datetime:
    floor = _floor(moment, grain)
    step = timedelta(days=1) if grain == "day" else timedelta(hours=1)
    if floor == _utc(moment):
        return floor
    try:
        return floor + step
    except OverflowError:  # the last hour or day of year 9999: no whole period starts after it
        return datetime.max.replace(tzinfo=UTC)


def _rollup_plan(session: Session, query: UsageQuery) -> _Plan | None:
    """The rollup when the window holds more than RAW_MAX_ROWS rows and no filter narrows it."""
    if query.filtered:
        return None
    dim = "all" if query.group_by in TIME_GROUPINGS else query.group_by
    grain = "hour" if dim == "all" else "day"
    start, end = _ceil(query.start, grain), _floor(query.end, grain)
    if start >= end:
        return None
    hours = (_ceil(query.start, "hour"), _floor(query.end, "hour"))
    rows = select(func.sum(R.count)).where(
        R.org_id == query.org_id, R.dim == "all", R.period >= hours[0], R.period < hours[1]
    )
    width = select(func.max(func.array_length(R.histogram, 1))).where(
        R.org_id == query.org_id, R.dim == dim, R.period >= start, R.period < end
    )
    total, longest = session.execute(select(rows.scalar_subquery(), width.scalar_subquery())).one()
    if total is None or total <= RAW_MAX_ROWS:
        return None
    return _Plan(dim, start, end, longest or 0)


def _rollup_groups(session: Session, query: UsageQuery, plan: _Plan) -> list[dict[str, Any]]:
    groups: dict[Any, _Acc] = {}
    nullable = query.group_by in _NULLABLE_KEYS
    for row in session.execute(_rollup_statement(query, plan)):
        acc = groups[None if nullable and row.key == "" else row.key] = _Acc()  # one row each
        acc.add_counts(row)
        acc.histogram = [n or 0 for n in row.histogram]  # NULL: no row reached that bucket
    for row in session.execute(_edges_statement(query, plan)):
        acc = groups.setdefault(row.key, _Acc())
        acc.add_counts(row)
        acc.add_buckets(row.buckets, row.ns)
    labels = _labels(session, query.group_by, [k for k in groups if k is not None])
    answer = []
    for key, acc in groups.items():
        total = acc.counts["count"]
        if total <= 0:
            continue
        pcts = (_percentile(acc.histogram, total, 0.5), _percentile(acc.histogram, total, 0.95))
        label = labels.get(key) if nullable else key
        answer.append(
            _group(query.group_by, key, label, acc.counts, acc.duration_sum / total, pcts)
        )
    if query.group_by in TIME_GROUPINGS:
        answer.sort(key=lambda g: g["key"])
    else:  # as the raw path: busiest first, then byte order, NULL last
        answer.sort(key=lambda g: (-g["count"], g["key"] is None, (g["key"] or "").encode()))
    return answer


def _rollup_statement(query: UsageQuery, plan: _Plan) -> Select:
    """Per group, the rollup's sums over the whole periods; histograms summed element-wise
    (one sum per element: far cheaper than unnesting them)."""
    if query.group_by not in TIME_GROUPINGS:
        key = R.key
    else:  # hourly rows: by hour as they are, by day truncated
        key = _trunc("day", R.period) if query.group_by == "day" else R.period
    sums = ", ".join(f"sum(histogram[{i}])" for i in range(1, plan.width + 1))
    histogram = literal_column(f"ARRAY[{sums or 0}]")  # plain text: 100s of terms
    return (
        select(
            key.label("key"),
            *(func.sum(getattr(R, name)).label(name) for name in _COUNTS),
            func.sum(R.duration_sum).label("duration_sum"),
            histogram.label("histogram"),
        )
        .where(
            R.org_id == query.org_id,
            R.dim == plan.dim,
            R.period >= plan.start,
            R.period < plan.end,
        )
        .group_by(key)
    )


def _edges_statement(query: UsageQuery, plan: _Plan) -> Select:
    """Per group, the raw rows of the partial periods at the window's edges: their counts and
    their histogram as (buckets, counts) arrays."""
    columns = (U.created_at, U.tool_id, U.server_id, U.caller_id, U.status, U.cached)
    parts = [
        select(*columns, U.duration_ms).where(
            U.org_id == query.org_id, U.created_at >= low, U.created_at < high
        )
        for low, high in ((query.start, plan.start), (plan.end, query.end))
    ]
    rows = union_all(*parts).subquery("edge")
    if query.group_by in TIME_GROUPINGS:
        key = _trunc(query.group_by, rows.c.created_at)
    else:
        key = rows.c[_KEY_COLUMNS[query.group_by].key].collate("C")
    bucket = func.mcp_usage_bucket(rows.c.duration_ms)
    count = func.count()
    cells = (
        select(
            key.label("key"),
            bucket.label("bucket"),
            count.label("count"),
            *(count.filter(rows.c.status == status).label(status) for status in STATUSES),
            count.filter(rows.c.cached).label("cached"),
            func.sum(rows.c.duration_ms).label("duration_sum"),
        )
        .group_by(key, bucket)
        .subquery("cell")
    )
    return select(
        cells.c.key,
        *(func.sum(cells.c[name]).label(name) for name in (*_COUNTS, "duration_sum")),
        func.array_agg(cells.c.bucket).label("buckets"),
        func.array_agg(cells.c.count).label("ns"),
    ).group_by(cells.c.key)


def _labels(session: Session, group_by: str, keys: list[Any]) -> dict[Any, Any]:
    if group_by not in _NULLABLE_KEYS or not keys:
        return {}
    given = values(column("key", SqlString), name="given").data([(k,) for k in keys])
    statement = select(given.c.key, _label(group_by, given.c.key).label("label"))
    return {key: label for key, label in session.execute(statement)}


def rollup_bucket(duration_ms: int) -> int:
    """The histogram bucket of a duration, as SQL's mcp_usage_bucket (migration 0003)."""
    if duration_ms < ROLLUP_EXACT_BELOW:
        return max(duration_ms, 0)
    ratio = math.log(duration_ms / float(ROLLUP_EXACT_BELOW)) / math.log(ROLLUP_RATIO)
    return ROLLUP_EXACT_BELOW + math.floor(ratio)


@cache
def bucket_value(bucket: int) -> float:
    """The value a bucket stands for: the geometric midpoint of the whole ms it holds, within
    ROLLUP_MAX_ERROR of each of them (the ms itself below ROLLUP_EXACT_BELOW)."""
    if bucket < ROLLUP_EXACT_BELOW:
        return float(bucket)
    scale = ROLLUP_RATIO ** (bucket - ROLLUP_EXACT_BELOW)
    low = math.ceil(ROLLUP_EXACT_BELOW * scale)
    high = math.ceil(ROLLUP_EXACT_BELOW * scale * ROLLUP_RATIO) - 1
    # Floating point at the edges: settle them on what rollup_bucket says.
    while rollup_bucket(low) < bucket:
        low += 1
    while rollup_bucket(low - 1) == bucket:
        low -= 1
    while rollup_bucket(high) > bucket:
        high -= 1
    while rollup_bucket(high + 1) == bucket:
        high += 1
    return math.sqrt(low * high)


def _percentile(histogram: list[int], total: int, fraction: float) -> float:
    """percentile_cont over the histogram: interpolate between the values at the two ranks."""
    position = fraction * (total - 1)
    low, high = math.floor(position), math.ceil(position)
    seen = list(accumulate(histogram))  # seen[b]: rows in buckets 0..b
    below = bucket_value(bisect_right(seen, low))  # the first bucket holding rank `low`
    above = bucket_value(bisect_right(seen, high))
    return below + (above - below) * (position - low)
