"""Analytics latency on 1,000,000 usage rows, for each groupBy, through the real endpoint
(scenario 7).

    .venv/bin/python -m bench.run --only 7                   # as part of the bench
    .venv/bin/python bench/analytics.py [--rows 1000000] [--runs 30]

Bulk-loads `rows` usage rows with generate_series into a migrated database (so the indexes are
the migrations'): 30 days; 90 % in the queried org, 40 tools on 8 servers, 200 callers, every
status, a quarter cached, JSON payloads of a few hundred bytes; then VACUUM ANALYZEs it as
autovacuum would. Calls GET /api/v1/analytics/usage (Flask test client, admin key) `runs` times
per groupBy (after two warm-up calls) for each window: the default last 24 hours,
the last 7 days and the last 30 days (the goal; bench.run: 24 hours, and 30 days with fewer runs).
Baseline: a bare `SELECT count(*)` of the same window's rows (psycopg2), what merely reaching
those rows costs. Runs in this process, against the environment given (process_env).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import process_env, scratch_env  # noqa: E402

GROUPINGS = ("tool", "server", "caller", "status", "hour", "day")
DAYS = 30
ORG = "default"

LOAD = """
INSERT INTO mcp_tool_usage (id, org_id, tool_id, server_id, tool_name, server_slug, job_id,
    caller_id, caller_type, agent_type, input, output, duration_ms, status, error_code, cached,
    truncated, created_at)
SELECT '{prefix}' || i, CASE WHEN i % 10 = 0 THEN 'other-org' ELSE 'default' END,
    't' || (i % 40), 's' || (i % 40 % 8), 'tool_' || (i % 40), 'srv-' || (i % 40 % 8),
    '{prefix}j' || i, 'caller-' || (i * 7 % 200), 'agent', 'researcher',
    jsonb_build_object('query', 'search term ' || i, 'limit', 10),
    jsonb_build_object('content', jsonb_build_array(jsonb_build_object(
        'type', 'text', 'text', repeat('result ', 30 + i % 20))), 'isError', false),
    (10 + (random() * random() * 2000))::int,
    CASE WHEN i % 100 < 85 THEN 'success' WHEN i % 100 < 93 THEN 'error'
         WHEN i % 100 < 97 THEN 'timeout' ELSE 'denied' END,
    CASE WHEN i % 100 BETWEEN 85 AND 92 THEN 'mcp_error' END,
    i % 4 = 0, false,
    now() - random() * {days:d} * interval '1 day'
FROM generate_series(1, {rows:d}) AS i
"""


def load_rows(cur, rows: int, prefix: str = "u", days: int = DAYS) -> None:
    """Insert `rows` synthetic usage rows (ids `<prefix><n>`), server-side."""
    cur.execute(LOAD.format(rows=rows, days=days, prefix=prefix))


def load(rows: int) -> dict:
    conn = psycopg2.connect(os.environ["DATABASE_URL"])
    conn.autocommit = True
    with conn.cursor() as cur:
        started = time.perf_counter()
        load_rows(cur, rows)
        cur.execute("VACUUM ANALYZE mcp_tool_usage")
        elapsed = time.perf_counter() - started
        cur.execute("SELECT pg_total_relation_size('mcp_tool_usage')")
        size = cur.fetchone()[0]
    conn.close()
    return {"rows": rows, "load_s": round(elapsed, 1), "table_mb": round(size / 2**20, 1)}


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _figures(samples: list[float]) -> dict:
    return {
        "p50": round(statistics.median(samples), 2),
        "p95": round(_p95(samples), 2),
        "n": len(samples),
    }


def windows(days: int = DAYS) -> dict[str, tuple[datetime, datetime]]:
    now = datetime.now(UTC)
    return {
        "24h": (now - timedelta(hours=24), now),
        "7d": (now - timedelta(days=7), now),
        f"{days}d": (now - timedelta(days=days), now),  # partial days at both ends, as a user's
    }


def _count_ms(cur, start: datetime, end: datetime, runs: int) -> list[float]:
    sql = (
        "SELECT count(*) FROM mcp_tool_usage"
        " WHERE org_id = %s AND created_at >= %s AND created_at < %s"
    )
    samples = []
    for _ in range(runs + 2):
        started = time.perf_counter()
        cur.execute(sql, (ORG, start, end))
        cur.fetchone()
        samples.append((time.perf_counter() - started) * 1000)
    return samples[2:]


def measure(runs: dict[str, int]) -> dict:
    """Scenario 7's timings, in this process (call inside `process_env`, after `load`):
    `runs` calls per groupBy in each window named (24h, 7d, 30d)."""
    from api.app import create_app

    client = create_app({"TESTING": True}).test_client()
    headers = {"Authorization": f"Bearer {os.environ['GATEWAY_ADMIN_TOKEN']}"}
    conn = psycopg2.connect(os.environ["DATABASE_URL"])
    conn.autocommit = True
    report: dict = {}
    with conn.cursor() as cur:
        for name, (start, end) in windows().items():
            if name not in runs:
                continue
            params = {} if name == "24h" else {"from": start.isoformat(), "to": end.isoformat()}
            out: dict = {"baseline_count": _figures(_count_ms(cur, start, end, runs[name]))}
            for group_by in GROUPINGS:
                samples, groups = [], 0
                for _ in range(runs[name] + 2):  # two warm-up calls, not counted
                    started = time.perf_counter()
                    response = client.get(
                        "/api/v1/analytics/usage",
                        query_string={**params, "groupBy": group_by},
                        headers=headers,
                    )
                    samples.append((time.perf_counter() - started) * 1000)
                    if response.status_code != 200:
                        raise RuntimeError(f"analytics {group_by}: {response.status_code}")
                    groups = len(response.json["groups"])
                out[group_by] = {**_figures(samples[2:]), "groups": groups}
            report[name] = out
    conn.close()
    return report


def analytics(rows: int, runs: dict[str, int]) -> dict:
    """Scenario 7: load, then measure (call inside `process_env`)."""
    loaded = load(rows)
    return {"load": loaded, "windows": measure(runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with scratch_env() as (env, _procs), process_env(env):
        report = analytics(args.rows, dict.fromkeys(windows(), args.runs))
    print(f"loaded {report['load']}")
    for window, groups in report["windows"].items():
        print(f"\nwindow: {window}, {args.runs} runs per groupBy")
        print(f"{'groupBy':<8} {'p50 ms':>8} {'p95 ms':>8} {'groups':>7}")
        for name, r in groups.items():
            print(f"{name:<8} {r['p50']:>8.1f} {r['p95']:>8.1f} {r.get('groups', ''):>7}")


if __name__ == "__main__":
    main()
