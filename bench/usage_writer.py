"""Usage writer throughput: records/s moved from the Redis stream into Postgres.

    .venv/bin/python bench/usage_writer.py [--records 50000] [--batch 1000] [--preload 1000000]

Creates a scratch database (migrated to head; `--preload` rows already in the table, as
bench/analytics.py loads them) and Redis prefix of its own, buffers `--records`
realistic usage records with `record_usage` (the same path the API and workers take; its rate is
printed too), then times `flush_usage` draining the stream, checks every record is in Postgres
exactly once, and drops everything it made.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import scratch_env  # noqa: E402


def _record(i: int) -> dict:
    return dict(
        org_id="default",
        tool_id=f"tool{i % 40:02d}",
        server_id=f"server{i % 8}",
        tool_name=f"tool_{i % 40}",
        server_slug=f"srv-{i % 8}",
        job_id=f"job{i:08d}",
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


def _preload(rows: int) -> None:
    from analytics import LOAD  # bench/analytics.py: the same synthetic month of usage

    conn = psycopg2.connect(os.environ["DATABASE_URL"])
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(LOAD.format(rows=rows, days=30).replace("'j' || i", "'pre' || i"))
        cur.execute("VACUUM ANALYZE mcp_tool_usage")
    conn.close()
    print(f"preloaded {rows:,} rows")


def run(records: int, batch: int) -> None:
    from common.db import get_engine
    from common.redis import get_redis
    from common.usage import record_usage
    from workers.usage_writer import flush_usage

    started = time.perf_counter()
    for i in range(records):
        record_usage(**_record(i))
    recorded = time.perf_counter() - started
    print(f"record_usage: {records / recorded:,.0f} records/s (one XADD each, one thread)")

    settled, started = 0, time.perf_counter()
    while settled < records:
        settled += flush_usage(max_batch=batch, budget_seconds=60)
    elapsed = time.perf_counter() - started
    print(f"flush_usage:  {records / elapsed:,.0f} records/s written (batch {batch})")

    with get_engine().connect() as conn:
        rows, distinct = conn.exec_driver_sql(
            "SELECT count(*), count(DISTINCT job_id) FROM mcp_tool_usage WHERE job_id LIKE %s",
            ("job%",),
        ).one()
    assert rows == distinct == records, (rows, distinct, records)
    assert get_redis().xlen(os.environ["REDIS_PREFIX"] + "usage") == 0
    print(f"check: {rows:,} rows, one per record; stream empty")
    get_engine().dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--preload", type=int, default=0, help="rows in the table beforehand")
    args = parser.parse_args()
    with scratch_env() as (env, _procs):
        os.environ.update(env)  # the writer runs in this process
        if args.preload:
            _preload(args.preload)
        run(args.records, args.batch)


if __name__ == "__main__":
    main()
