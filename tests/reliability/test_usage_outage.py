"""No usage record lost, none written twice (design §4): through a Postgres outage with calls
going on through a real worker, and a writer SIGKILLed in the middle of a batch. Plus the
promise that a record is in analytics within 5 seconds.

The outage: the test database refuses connections (`ALLOW_CONNECTIONS false`) and every open
connection is terminated, so workers and the API lose Postgres exactly as in a crash. The call
path needs no database then: the admin token is checked without one, and the tool was looked
up (and cached) by a call made before the outage.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import pytest
from sqlalchemy import func, select

from common.db import new_session
from common.ids import new_id
from common.models import McpToolUsage
from common.redis import get_redis
from common.usage import STREAM_FIELD, build_record, dumps, record_usage, stream_key
from tests.conftest import PG_ADMIN_URL, TEST_DB, admin_execute
from tests.harness import ROOT, stdio_echo_config, wait_for
from workers.usage_writer import GROUP, flush_usage

CALLS_DURING_OUTAGE = 20


def rows_per_job(job_ids: list[str]) -> dict[str, int]:
    with new_session() as session:
        query = (
            select(McpToolUsage.job_id, func.count())
            .where(McpToolUsage.job_id.in_(job_ids))
            .group_by(McpToolUsage.job_id)
        )
        return dict(session.execute(query).all())


def _terminate_connections() -> None:
    admin_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{TEST_DB}' AND pid <> pg_backend_pid()"
    )


@contextmanager
def postgres_outage() -> Iterator[None]:
    """The test database refuses every connection until the block ends (even on failure)."""
    admin_execute(f'ALTER DATABASE "{TEST_DB}" WITH ALLOW_CONNECTIONS false')
    try:
        _terminate_connections()
        yield
    finally:
        admin_execute(f'ALTER DATABASE "{TEST_DB}" WITH ALLOW_CONNECTIONS true')


def test_calls_during_a_postgres_outage_are_all_recorded_once_it_returns(
    clean_state, spawn_worker, gateway, slug
):
    spawn_worker(slug)
    gateway.register(slug, "stdio", stdio_echo_config())
    warm = gateway.call(f"{slug}.echo", {"text": "before the outage"})
    assert warm.status_code == 200 and warm.json["status"] == "succeeded", warm.json
    wait_for(lambda: rows_per_job([warm.json["jobId"]]), 10, "the pipeline before the outage")
    client = get_redis()

    job_ids = []
    with postgres_outage():
        with pytest.raises(psycopg2.OperationalError, match="not currently accepting"):
            psycopg2.connect(os.environ["DATABASE_URL"]).close()
        for n in range(CALLS_DURING_OUTAGE):
            response = gateway.call(f"{slug}.echo", {"text": f"during the outage {n}"})
            assert response.status_code == 200, response.json
            assert response.json["status"] == "succeeded", response.json
            job_ids.append(response.json["jobId"])
        # The worker's writer has tried (it holds entries it read) and acknowledged none.
        wait_for(lambda: client.xpending(stream_key(), GROUP)["pending"] > 0, 10, "a write try")
        assert client.xlen(stream_key()) >= CALLS_DURING_OUTAGE

    rows = wait_for(
        lambda: len(found := rows_per_job(job_ids)) == CALLS_DURING_OUTAGE and found,
        20,
        "every call's usage row after Postgres returned",
    )
    assert rows == {job_id: 1 for job_id in job_ids}
    wait_for(lambda: client.xlen(stream_key()) == 0, 10, "the stream to drain")
    assert rows_per_job([warm.json["jobId"]]) == {warm.json["jobId"]: 1}


DOOMED_WRITER = """
from workers.usage_writer import flush_usage
while True:
    flush_usage(max_batch=200, consumer="doomed", budget_seconds=600)
"""


def _buffer(count: int) -> list[str]:
    job_ids = [f"kill-{n}" for n in range(count)]
    pipe = get_redis().pipeline(transaction=False)
    for job_id in job_ids:
        record = build_record(
            org_id="default",
            tool_name="echo",
            server_slug="demo",
            job_id=job_id,
            caller_id="admin",
            caller_type="user",
            agent_type="admin",
            status="success",
        )
        pipe.xadd(stream_key(), {STREAM_FIELD: dumps(record)})
    pipe.execute()
    return job_ids


def _total_rows() -> int:
    with new_session() as session:
        return session.scalar(select(func.count()).select_from(McpToolUsage))


def _doomed_pending() -> int:
    info = get_redis().xpending_range(stream_key(), GROUP, "-", "+", 1000, "doomed")
    return len(info)


def test_a_writer_killed_mid_batch_loses_and_duplicates_nothing(clean_state):
    job_ids = _buffer(30_000)
    writer = subprocess.Popen([sys.executable, "-c", DOOMED_WRITER], cwd=ROOT, env=os.environ)
    blocker = psycopg2.connect(os.environ["DATABASE_URL"])
    try:
        wait_for(lambda: _total_rows() > 0, 20, "the doomed writer to commit a first batch")
        with blocker.cursor() as cur:  # its next insert waits on this lock: mid-batch
            cur.execute("LOCK TABLE mcp_tool_usage IN SHARE MODE")
        wait_for(_doomed_pending, 10, "the doomed writer to hold a batch")
        time.sleep(0.2)
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
        held = _doomed_pending()
    finally:
        blocker.rollback()
        blocker.close()
        if writer.poll() is None:
            writer.kill()
    written_before = _total_rows()
    assert 0 < written_before < len(job_ids)
    assert held > 0

    time.sleep(0.05)
    while flush_usage(consumer="survivor", claim_idle_ms=10):
        pass

    rows = rows_per_job(job_ids)
    assert len(rows) == len(job_ids) and set(rows.values()) == {1}
    assert get_redis().xlen(stream_key()) == 0


def test_a_record_is_in_analytics_within_five_seconds(
    clean_state, spawn_worker, client, admin_headers
):
    spawn_worker()  # its flush thread is the writer

    record_usage(
        org_id="default",
        tool_id="t-fresh",
        tool_name="echo",
        server_slug="fresh",
        job_id=new_id(),
        caller_id="admin",
        caller_type="user",
        agent_type="admin",
        status="success",
        duration_ms=7,
    )

    def counted() -> int:
        groups = client.get("/api/v1/analytics/usage", headers=admin_headers).json["groups"]
        return sum(g["count"] for g in groups)

    wait_for(lambda: counted() == 1, 5, "the record in analytics")


def test_the_outage_helper_restores_connections_even_when_the_block_fails():
    try:
        with postgres_outage():
            raise RuntimeError("a failing test body")
    except RuntimeError:
        pass

    conn = psycopg2.connect(PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + TEST_DB)
    conn.close()
