"""Usage writer throughput (scenario 6): records/s moved from the Redis stream into Postgres.

    .venv/bin/python -m bench.run --only 6                 # as part of the bench
    .venv/bin/python bench/usage_writer.py [--records 50000] [--batch 1000] [--preload 1000000]

Buffers `records` realistic usage records with `record_usage` (the same path the API and workers
take; its rate is reported too), then times `flush_usage` draining the stream, and checks every
record is in Postgres exactly once. Baseline: Postgres inserting as many similar rows by itself
(`INSERT ... SELECT` over generate_series, bench/analytics.py's loader: no client, no Redis), the
ceiling of this database on this machine. Runs in this process, against the environment given
(`bench.common.process_env`): on the standalone CLI a scratch database and Redis prefix of its
own (with `--preload` rows already in the table, as bench/analytics.py loads them).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.analytics import load_rows  # noqa: E402
from bench.common import process_env, scratch_env  # noqa: E402


def _record(i: int) -> dict:
    return dict(
        org_id="default",
        tool_id=f"tool{i % 40:02d}",
        server_id=f"server{i % 8}",
        tool_name=f"tool_{i % 40}",
        server_slug=f"srv-{i % 8}",
        job_id=f"bench-job-{i:08d}",
        caller_id=f"agent-{i % 50}",
        caller_type="agent",
        agent_type="researcher",
        input={"query": f"search term {i}", "limit": 10, "apiKey": "sk-never-stored"},
        output={"content": [{"type": "text", "text": "result " * 60}], "isError": False},
        duration_ms=20 + i % 300,
        status="success" if i % 10 else "error",
        error_code=None,
        cached=i % 4 == 0,
    )


def _baseline(records: int) -> float:
    """Rows/s Postgres inserts by itself (similar rows, server-side), deleted again."""
    conn = psycopg2.connect(os.environ["DATABASE_URL"])
    conn.autocommit = True
    with conn.cursor() as cur:
        started = time.perf_counter()
        load_rows(cur, records, prefix="base")
        elapsed = time.perf_counter() - started
        cur.execute("DELETE FROM mcp_tool_usage WHERE id LIKE 'base%'")
    conn.close()
    return records / elapsed


def usage_writer(records: int, batch: int = 1000) -> dict:
    """Scenario 6, in this process (call inside `process_env`)."""
    from common.db import get_engine
    from common.redis import get_redis
    from common.usage import record_usage
    from workers.usage_writer import flush_usage

    baseline = _baseline(records)

    started = time.perf_counter()
    for i in range(records):
        record_usage(**_record(i))
    recorded = time.perf_counter() - started

    settled, started = 0, time.perf_counter()
    while settled < records and time.perf_counter() - started < 300:
        settled += flush_usage(max_batch=batch, budget_seconds=60)
    elapsed = time.perf_counter() - started

    with get_engine().connect() as conn:
        rows, distinct = conn.exec_driver_sql(
            "SELECT count(*), count(DISTINCT job_id) FROM mcp_tool_usage WHERE job_id LIKE %s",
            ("bench-job-%",),
        ).one()
    if not rows == distinct == records:
        raise RuntimeError(f"rows {rows}, distinct {distinct}, records {records}")
    left = get_redis().xlen(os.environ["REDIS_PREFIX"] + "usage")
    if left:
        raise RuntimeError(f"{left} entries left in the stream")
    writer = records / elapsed
    return {
        "records": records,
        "batch": batch,
        "postgres_insert_rps": round(baseline),
        "writer_rps": round(writer),
        "record_usage_rps": round(records / recorded),
        "ratio": round(writer / baseline, 3),
        "rows_checked": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--preload", type=int, default=0, help="rows in the table beforehand")
    args = parser.parse_args()
    with scratch_env() as (env, _procs), process_env(env):
        if args.preload:
            conn = psycopg2.connect(os.environ["DATABASE_URL"])
            conn.autocommit = True
            with conn.cursor() as cur:
                load_rows(cur, args.preload, prefix="pre")
            conn.close()
            print(f"preloaded {args.preload:,} rows")
        report = usage_writer(args.records, args.batch)
    for name, value in report.items():
        print(f"{name:20} {value}")


if __name__ == "__main__":
    main()
