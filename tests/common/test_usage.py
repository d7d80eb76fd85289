"""The usage pipeline: records made safe to keep (redaction and capping, pure), and the stream →
Postgres writer on the real Redis and Postgres: every record written exactly once, however
often it is delivered, whoever delivers it, and whatever a bad neighbour in its batch holds.

Tests touching Postgres or Redis take `clean_state`; the pure ones need neither.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from common.db import new_session
from common.models import McpToolUsage
from common.redis import get_redis, key
from common.usage import (
    REDACTED,
    STREAM_FIELD,
    build_record,
    cap_payload,
    dead_letter_key,
    dumps,
    record_usage,
    redact,
    stream_key,
)
from tests.harness import wait_for
from workers import usage_writer
from workers.usage_writer import GROUP, Flusher, flush_if_free, flush_usage, flush_usage_task


def usage(**overrides) -> dict:
    fields = dict(
        org_id="default",
        tool_id="tool1",
        server_id="server1",
        tool_name="echo",
        server_slug="demo",
        job_id="job1",
        caller_id="admin",
        caller_type="user",
        agent_type="admin",
        input={"text": "hi"},
        output={"content": [{"type": "text", "text": "hi"}], "isError": False},
        duration_ms=12,
        status="success",
        error_code=None,
        cached=False,
    )
    fields.update(overrides)
    return fields


def rows_by_job() -> dict[str, int]:
    with new_session() as session:
        query = select(McpToolUsage.job_id, func.count()).group_by(McpToolUsage.job_id)
        return dict(session.execute(query).all())


def stream_state() -> tuple[int, int]:
    """(entries left in the stream, entries read but not acknowledged)."""
    client = get_redis()
    return client.xlen(stream_key()), client.xpending(stream_key(), GROUP)["pending"]


# -- redaction and capping (pure) -----------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "password",
        "Password",
        "db_passwd",
        "client_secret",
        "accessToken",
        "refresh_token",
        "api_key",
        "apiKey",
        "X-API-KEY",
        "Authorization",
        "Set-Cookie",
        "credentials",
        "private_key",
    ],
)
def test_secret_looking_keys_are_masked_at_any_depth(name):
    value = {"outer": [{"inner": {name: "s3cr3t-value"}}], name: {"nested": "s3cr3t-value"}}

    redacted = redact(value)

    assert redacted == {"outer": [{"inner": {name: REDACTED}}], name: REDACTED}
    assert "s3cr3t" not in dumps(redacted)


def test_ordinary_keys_and_values_are_kept():
    value = {"query": "weather", "limit": 5, "ratio": 0.5, "flags": [True, None], "author": "x"}

    assert redact(value) == value


def test_bearer_tokens_and_gateway_keys_inside_text_are_masked():
    text = "curl -H 'Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345' key=mcpgw_" + "A" * 40

    cleaned = redact({"command": text})["command"]

    assert "abcdefghijklmnopqrstuvwxyz" not in cleaned
    assert "Bearer ***" in cleaned
    assert "mcpgw_***" in cleaned and "AAAA" not in cleaned


def test_text_postgres_would_refuse_is_replaced():
    cleaned = redact({"nul": "a\x00b", "surrogate": "x\ud800y", "nan": float("nan")})

    assert cleaned == {"nul": "a\ufffdb", "surrogate": "x?y", "nan": "nan"}


def test_a_payload_within_the_cap_is_kept_as_is():
    value = {"text": "x" * 100}

    assert cap_payload(value, limit=1000) == (value, False)
    assert cap_payload(None, limit=1000) == (None, False)


@pytest.mark.parametrize("filler", ["x", '"', "é", "🙂", "\\", "\n"])
def test_a_payload_over_the_cap_becomes_a_preview_that_fits(filler):
    value = {"text": filler * 5000}
    limit = 1024

    capped, truncated = cap_payload(value, limit=limit)

    assert truncated
    assert capped["truncated"] is True
    assert capped["bytes"] == len(dumps(value).encode())
    assert len(dumps(capped).encode()) <= limit
    assert capped["preview"].startswith('{"text":"')
    assert len(dumps(capped).encode()) > limit - 16  # the room is used, not wasted


def test_build_record_stamps_an_id_and_the_time_and_marks_truncation(settings_env):
    settings_env(USAGE_MAX_PAYLOAD_BYTES="256")
    before = datetime.now(UTC)
    record = build_record(**usage(output={"text": "y" * 1000}))

    assert len(record["id"]) >= 20
    assert before <= datetime.fromisoformat(record["created_at"]) <= datetime.now(UTC)
    assert record["truncated"] is True
    assert record["input"] == {"text": "hi"}
    assert record["output"]["truncated"] is True


def test_secrets_are_redacted_before_capping_so_previews_hold_none():
    record = build_record(**usage(input={"password": "hunter2-" * 20000, "q": "x" * 100_000}))

    assert record["truncated"] is True
    assert "hunter2" not in dumps(record)


def test_build_record_refuses_unknown_fields_and_clips_long_text():
    with pytest.raises(TypeError, match="toolName"):
        build_record(**usage(toolName="camelCase is not a column"))

    record = build_record(**usage(status="s" * 50, caller_id="c" * 500))

    assert len(record["status"]) == 16
    assert len(record["caller_id"]) == 200


# -- stream → Postgres ------------------------------------------------------------------------


def test_a_recorded_call_reaches_postgres_with_every_field(clean_state):
    record_id = record_usage(**usage(input={"text": "hi", "token": "abc"}, cached=True))

    assert flush_usage() == 1

    with new_session() as session:
        row = session.get(McpToolUsage, record_id)
    assert row is not None
    assert (row.org_id, row.tool_id, row.server_id, row.job_id) == (
        "default",
        "tool1",
        "server1",
        "job1",
    )
    assert (row.tool_name, row.server_slug, row.caller_id, row.caller_type, row.agent_type) == (
        "echo",
        "demo",
        "admin",
        "user",
        "admin",
    )
    assert row.input == {"text": "hi", "token": REDACTED}
    assert row.output == {"content": [{"type": "text", "text": "hi"}], "isError": False}
    assert (row.duration_ms, row.status, row.error_code, row.cached, row.truncated) == (
        12,
        "success",
        None,
        True,
        False,
    )
    assert datetime.now(UTC) - row.created_at < timedelta(seconds=10)
    assert stream_state() == (0, 0)


def test_records_made_before_any_writer_existed_are_not_skipped(clean_state):
    for n in range(3):
        record_usage(**usage(job_id=f"early{n}"))  # the group does not exist yet

    flush_usage()

    assert rows_by_job() == {"early0": 1, "early1": 1, "early2": 1}


def test_many_records_are_written_in_batches_exactly_once(clean_state):
    for n in range(2500):
        record_usage(**usage(job_id=f"job{n}"))

    assert flush_usage(max_batch=300) == 2500

    rows = rows_by_job()
    assert len(rows) == 2500 and set(rows.values()) == {1}
    assert stream_state() == (0, 0)


def test_flushing_again_writes_nothing_twice(clean_state):
    record_usage(**usage(job_id="once"))
    flush_usage()

    assert flush_usage() == 0
    assert rows_by_job() == {"once": 1}


def test_a_record_delivered_twice_is_one_row(clean_state):
    raw = dumps(build_record(**usage(job_id="twice")))
    client = get_redis()
    client.xadd(stream_key(), {STREAM_FIELD: raw})
    flush_usage()
    client.xadd(stream_key(), {STREAM_FIELD: raw})  # the same record (same id) again

    assert flush_usage() == 1
    assert rows_by_job() == {"twice": 1}


def _read_as_dead_writer(count: int) -> list[tuple[str, dict]]:
    """What a writer does before it dies: claim entries from the group, never acknowledge."""
    client = get_redis()
    usage_writer.ensure_group(client)
    answer = client.xreadgroup(GROUP, "dead-writer", {stream_key(): ">"}, count=count)
    return answer[0][1]


def test_entries_a_dead_writer_read_are_claimed_once_idle_and_written_once(clean_state):
    for n in range(5):
        record_usage(**usage(job_id=f"orphan{n}"))
    assert len(_read_as_dead_writer(5)) == 5

    assert flush_usage(consumer="alive", claim_idle_ms=60_000) == 0  # not idle long enough
    assert rows_by_job() == {}
    assert stream_state() == (5, 5)

    time.sleep(0.05)
    assert flush_usage(consumer="alive", claim_idle_ms=10) == 5

    assert rows_by_job() == {f"orphan{n}": 1 for n in range(5)}
    assert stream_state() == (0, 0)


def test_a_writer_killed_between_commit_and_ack_leaves_no_duplicate(clean_state):
    for n in range(4):
        record_usage(**usage(job_id=f"committed{n}"))
    entries = _read_as_dead_writer(4)
    assert usage_writer._insert([fields[STREAM_FIELD] for _, fields in entries]) == []
    # ... and it dies here: rows committed, entries never acknowledged.

    time.sleep(0.05)
    assert flush_usage(consumer="alive", claim_idle_ms=10) == 4

    assert rows_by_job() == {f"committed{n}": 1 for n in range(4)}
    assert stream_state() == (0, 0)


def test_a_writer_retries_its_own_unacknowledged_entries_first(clean_state):
    record_usage(**usage(job_id="mine"))
    client = get_redis()
    usage_writer.ensure_group(client)
    client.xreadgroup(GROUP, "me", {stream_key(): ">"}, count=10)  # read, then the insert failed

    assert flush_usage(consumer="me", claim_idle_ms=60_000) == 1
    assert rows_by_job() == {"mine": 1}


def test_a_record_postgres_refuses_is_set_aside_and_the_rest_written(clean_state):
    client = get_redis()
    record_usage(**usage(job_id="good1"))
    client.xadd(stream_key(), {STREAM_FIELD: "this is not json"})
    bad = build_record(**usage(job_id="bad"))
    bad["created_at"] = "not a time"
    client.xadd(stream_key(), {STREAM_FIELD: dumps(bad)})
    record_usage(**usage(job_id="good2"))

    assert flush_usage() == 4

    assert rows_by_job() == {"good1": 1, "good2": 1}
    dead = [fields[STREAM_FIELD] for _, fields in client.xrange(dead_letter_key())]
    assert dead == ["this is not json", dumps(bad)]
    assert stream_state() == (0, 0)


def test_entries_deleted_after_commit_but_still_pending_are_just_acknowledged(clean_state):
    record_usage(**usage(job_id="gone"))
    (entry_id, fields), *_ = _read_as_dead_writer(1)
    usage_writer._insert([fields[STREAM_FIELD]])
    get_redis().xdel(stream_key(), entry_id)  # killed between XDEL and XACK

    time.sleep(0.05)
    flush_usage(consumer="alive", claim_idle_ms=10)

    assert rows_by_job() == {"gone": 1}
    assert stream_state() == (0, 0)


def test_only_one_process_flushes_at_a_time(clean_state):
    record_usage(**usage(job_id="locked"))
    lock = get_redis().lock(key("lock", "usage-flush"), timeout=10)
    assert lock.acquire(blocking=False)
    try:
        assert flush_if_free() is None
        assert rows_by_job() == {}
    finally:
        lock.release()

    assert flush_if_free() == 1
    assert rows_by_job() == {"locked": 1}


def test_the_beat_task_flushes_and_prunes_long_gone_writers(clean_state):
    record_usage(**usage(job_id="beat"))
    client = get_redis()
    usage_writer.ensure_group(client)
    client.xgroup_createconsumer(stream_key(), GROUP, "dead-writer")  # nothing pending
    time.sleep(0.05)

    assert flush_usage_task() == 1
    assert usage_writer.prune_consumers(idle_ms=10) >= 1

    names = {c["name"] for c in client.xinfo_consumers(stream_key(), GROUP)}
    assert "dead-writer" not in names
    assert rows_by_job() == {"beat": 1}


def test_the_flusher_thread_writes_records_within_seconds(clean_state):
    flusher = Flusher(interval=0.2)
    flusher.start()
    try:
        record_usage(**usage(job_id="threaded"))
        wait_for(lambda: rows_by_job() == {"threaded": 1}, 5, "the flusher thread")
    finally:
        flusher.stop()
