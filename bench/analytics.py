"""Analytics latency on 1,000,000 usage rows, for each groupBy, through the real endpoint.

    .venv/bin/python bench/analytics.py [--rows 1000000] [--runs 30]

Creates a scratch database (migrated to head, so the indexes are the migrations'), bulk-loads
`--rows` usage rows with generate_series (30 days; 90 % in the queried org, 40 tools on 8
servers, 200 callers, every status, a quarter cached, JSON payloads of a few hundred bytes),
VACUUM ANALYZEs it as autovacuum would, then calls GET /api/v1/analytics/usage (Flask test
client, admin key) `--runs` times per groupBy for three windows: the default last 24 hours, the
last 7 days, and the whole 30 days (every row of the org, 900,000). Prints p50/p95 ms per
groupBy and drops the database.
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
sys.path.insert(0, str(ROOT))

from bench.common import scratch_env  # noqa: E402
from common.db import get_engine  # noqa: E402

GROUPINGS = ("tool", "server", "caller", "status", "hour", "day")
DAYS = 30

LOAD = """
INSERT INTO mcp_tool_usage (id, org_id, tool_id, server_id, tool_name, server_slug, job_id,
    caller_id, caller_type, agent_type, input, output, duration_ms, status, error_code, cached,
    truncated, created_at)
SELECT 'u' || i, CASE WHEN i % 10 = 0 THEN 'other-org' ELSE 'default' END,
    't' || (i % 40), 's' || (i % 40 % 8), 'tool_' || (i % 40), 'srv-' || (i % 40 % 8), 'j' || i,
    'caller-' || (i * 7 % 200), 'agent', 'researcher',
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


def _load(rows: int) -> None:
    conn = psycopg2.connect(os.environ["DATABASE_URL"])
    conn.autocommit = True
    with conn.cursor() as cur:
        started = time.perf_counter()
        cur.execute(LOAD.format(rows=rows, days=DAYS))
        cur.execute("VACUUM ANALYZE mcp_tool_usage")
        cur.execute("SELECT pg_size_pretty(pg_total_relation_size('mcp_tool_usage'))")
        size = cur.fetchone()[0]
    conn.close()
    print(f"loaded {rows:,} rows in {time.perf_counter() - started:.1f} s (table + indexes {size})")


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _measure(client, headers, params: dict, runs: int) -> tuple[float, float, int]:
    samples, groups = [], 0
    for _ in range(runs + 2):  # two warm-up runs, not counted
        started = time.perf_counter()
        response = client.get("/api/v1/analytics/usage", query_string=params, headers=headers)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.json
        groups = len(response.json["groups"])
    samples = samples[2:]
    return statistics.median(samples), _percentile(samples, 0.95), groups


def run(runs: int) -> None:
    from api.app import create_app

    client = create_app({"TESTING": True}).test_client()
    headers = {"Authorization": f"Bearer {os.environ['GATEWAY_ADMIN_TOKEN']}"}
    now = datetime.now(UTC)
    windows = {
        "last 24 h (default)": {},
        "last 7 days": {"from": (now - timedelta(days=7)).isoformat()},
        f"all {DAYS} days": {
            "from": (now - timedelta(days=DAYS + 1)).isoformat(),
            "to": (now + timedelta(minutes=1)).isoformat(),
        },
    }
    for name, window in windows.items():
        print(f"\nwindow: {name}, {runs} runs per groupBy")
        print(f"{'groupBy':<8} {'p50 ms':>8} {'p95 ms':>8} {'groups':>7}")
        for group_by in GROUPINGS:
            p50, p95, groups = _measure(client, headers, {**window, "groupBy": group_by}, runs)
            print(f"{group_by:<8} {p50:>8.1f} {p95:>8.1f} {groups:>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with scratch_env() as (env, _procs):
        os.environ.update(env)  # this process is the API (Flask test client) and the loader
        _load(args.rows)
        run(args.runs)
        get_engine().dispose()


if __name__ == "__main__":
    main()
