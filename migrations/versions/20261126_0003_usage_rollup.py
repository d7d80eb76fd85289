"""usage: rollup (per hour, and per day and tool/server/caller/status) kept by triggers

Analytics over wide windows (common.analytics) reads `mcp_usage_rollup` instead of every usage
row. Statement-level triggers on `mcp_tool_usage` keep it in step in the same transaction as the
change, whoever writes (the usage writer, a bulk load, a test): INSERT adds the new rows, DELETE
subtracts the old ones, UPDATE both, TRUNCATE empties it. Existing rows are backfilled here,
after the triggers exist and under their lock, so no row is missed or counted twice.
Cost to writers: about 40 µs per inserted row (a 1,000-row usage-writer batch: 35 → 77 ms; a
1,000,000-row bulk insert: about 10 s more).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Duration bucket (0-based; histogram index = bucket + 1): one per ms below 20 ms, then buckets
# 5 % wide ([20·1.05^k, 20·1.05^(k+1))). common.analytics mirrors it (ROLLUP_EXACT_BELOW,
# ROLLUP_RATIO); a test checks they agree. Plain SQL, not STRICT, so the planner inlines it.
BUCKET_FUNCTION = """
CREATE FUNCTION mcp_usage_bucket(duration_ms integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN duration_ms < 20 THEN greatest(duration_ms, 0)
        ELSE 20 + floor(ln(duration_ms / 20::float8) / ln(1.05::float8))::integer END
$$
"""

# Add (sign 1) or subtract (sign -1) the rows of `source` to the rollup, cells in key order (two
# writers lock shared cells in the same order). Histograms are dense arrays up to the highest
# bucket seen; merging adds them element-wise (the shorter padded with zeros).
APPLY = """
INSERT INTO mcp_usage_rollup AS r (org_id, dim, period, key, count, success, error, timeout,
    denied, cached, duration_sum, histogram)
SELECT c.org_id, c.dim, c.period, c.key, {sign} * sum(c.n), {sign} * sum(c.success),
    {sign} * sum(c.error), {sign} * sum(c.timeout), {sign} * sum(c.denied), {sign} * sum(c.cached),
    {sign} * sum(c.duration_sum),
    (SELECT array_agg({sign} * coalesce(h.n, 0) ORDER BY i)::integer[]
     FROM generate_series(0, max(c.bucket)) AS i
     LEFT JOIN unnest(array_agg(c.bucket), array_agg(c.n)) AS h(bucket, n) ON h.bucket = i)
FROM (
    SELECT u.org_id, d.dim, d.period, d.key, mcp_usage_bucket(u.duration_ms) AS bucket,
        count(*) AS n,
        count(*) FILTER (WHERE u.status = 'success') AS success,
        count(*) FILTER (WHERE u.status = 'error') AS error,
        count(*) FILTER (WHERE u.status = 'timeout') AS timeout,
        count(*) FILTER (WHERE u.status = 'denied') AS denied,
        count(*) FILTER (WHERE u.cached) AS cached,
        sum(u.duration_ms) AS duration_sum
    FROM {source} AS u
    CROSS JOIN LATERAL (VALUES
        ('all', date_trunc('hour', u.created_at, 'UTC'), ''),
        ('tool', date_trunc('day', u.created_at, 'UTC'), coalesce(u.tool_id, '')),
        ('server', date_trunc('day', u.created_at, 'UTC'), coalesce(u.server_id, '')),
        ('caller', date_trunc('day', u.created_at, 'UTC'), u.caller_id),
        ('status', date_trunc('day', u.created_at, 'UTC'), u.status)
    ) AS d(dim, period, key)
    GROUP BY 1, 2, 3, 4, 5
) AS c
GROUP BY c.org_id, c.dim, c.period, c.key
ORDER BY c.org_id, c.dim, c.period, c.key
ON CONFLICT (org_id, dim, period, key) DO UPDATE SET
    count = r.count + excluded.count,
    success = r.success + excluded.success,
    error = r.error + excluded.error,
    timeout = r.timeout + excluded.timeout,
    denied = r.denied + excluded.denied,
    cached = r.cached + excluded.cached,
    duration_sum = r.duration_sum + excluded.duration_sum,
    histogram = (
        SELECT array_agg(coalesce(a, 0) + coalesce(b, 0) ORDER BY i)
        FROM unnest(r.histogram, excluded.histogram) WITH ORDINALITY AS m(a, b, i)
    )
"""

# Cells whose rows were all deleted go away (in the orgs and periods the deleted rows touched).
PRUNE = """
DELETE FROM mcp_usage_rollup AS r
WHERE r.count <= 0
    AND r.org_id IN (SELECT DISTINCT org_id FROM old_rows)
    AND r.period >= (SELECT date_trunc('day', min(created_at), 'UTC') FROM old_rows)
    AND r.period <= (SELECT max(created_at) FROM old_rows)
"""

SYNC_FUNCTION = f"""
CREATE FUNCTION mcp_usage_rollup_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        TRUNCATE mcp_usage_rollup;
        RETURN NULL;
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        {APPLY.format(sign=-1, source="old_rows")};
        {PRUNE};
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        {APPLY.format(sign=1, source="new_rows")};
    END IF;
    RETURN NULL;
END
$$
"""

TRIGGERS = {
    "mcp_usage_rollup_insert": "AFTER INSERT ON mcp_tool_usage REFERENCING NEW TABLE AS new_rows",
    "mcp_usage_rollup_delete": "AFTER DELETE ON mcp_tool_usage REFERENCING OLD TABLE AS old_rows",
    "mcp_usage_rollup_update": (
        "AFTER UPDATE ON mcp_tool_usage REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    ),
    "mcp_usage_rollup_truncate": "AFTER TRUNCATE ON mcp_tool_usage",
}


def upgrade() -> None:
    op.create_table(
        "mcp_usage_rollup",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("dim", sa.String(length=8), nullable=False),
        sa.Column("period", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("success", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.BigInteger(), nullable=False),
        sa.Column("timeout", sa.BigInteger(), nullable=False),
        sa.Column("denied", sa.BigInteger(), nullable=False),
        sa.Column("cached", sa.BigInteger(), nullable=False),
        sa.Column("duration_sum", sa.BigInteger(), nullable=False),
        sa.Column("histogram", postgresql.ARRAY(sa.Integer()), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "dim", "period", "key"),
    )
    # Never compressed or moved out of line: reads subscript every element of every histogram.
    op.execute("ALTER TABLE mcp_usage_rollup ALTER COLUMN histogram SET STORAGE PLAIN")
    op.execute(BUCKET_FUNCTION)
    op.execute(SYNC_FUNCTION)
    for name, event in TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {name} {event} FOR EACH STATEMENT"
            " EXECUTE FUNCTION mcp_usage_rollup_sync()"
        )
    # The triggers' lock keeps writers out until this commits: the backfill sees every row.
    op.execute(APPLY.format(sign=1, source="mcp_tool_usage"))


def downgrade() -> None:
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON mcp_tool_usage")
    op.execute("DROP FUNCTION mcp_usage_rollup_sync()")
    op.execute("DROP FUNCTION mcp_usage_bucket(integer)")
    op.drop_table("mcp_usage_rollup")
