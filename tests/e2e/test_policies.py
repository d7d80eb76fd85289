"""Call policies end to end, through POST /tools/call, a real worker and a real MCP server:
the permission matrix (and its usage records), argument validation, the result cache and
single-flight. Executions are counted by the echo server itself (COUNTER_FILE, one line each).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select, update

from common import jobs
from common.cache import result_key
from common.config import get_settings
from common.db import session_scope
from common.models import McpTool, McpToolUsage
from common.redis import get_redis
from common.registry import find_tool
from tests.factories import bearer, insert_key
from tests.harness import stdio_echo_config, wait_for


@pytest.fixture
def counter(tmp_path):
    path = tmp_path / "executions"
    path.touch()

    def executions(prefix: str) -> int:
        return sum(1 for line in path.read_text().splitlines() if line.startswith(prefix))

    executions.path = str(path)
    return executions


@pytest.fixture
def echo(worker, gateway, slug, counter) -> dict[str, str]:
    """A connected echo server counting its executions; returns tool name → tool id."""
    server = gateway.register(slug, "stdio", stdio_echo_config({"COUNTER_FILE": counter.path}))
    response = gateway.client.get(
        f"/api/v1/tools?serverId={server['id']}&limit=100", headers=gateway.headers
    )
    return {tool["name"]: tool["id"] for tool in response.json["items"]}


def set_rules(gateway, slug: str, rules: dict[str, dict[str, bool]]) -> None:
    body = [
        {"tool": f"{slug}.{tool}", "agentType": agent_type, "allowed": allowed}
        for tool, by_type in rules.items()
        for agent_type, allowed in by_type.items()
    ]
    response = gateway.client.put(
        "/api/v1/permissions", json={"rules": body}, headers=gateway.headers
    )
    assert response.status_code == 200, response.json


def set_tool(gateway, tool_id: str, **changes) -> None:
    response = gateway.client.put(f"/api/v1/tools/{tool_id}", json=changes, headers=gateway.headers)
    assert response.status_code == 200, response.json


def change_tool_row(tool_id: str, **values) -> None:
    """Change the stored definition, as a rediscovery would (the registry sees it on commit)."""
    with session_scope() as session:
        session.execute(update(McpTool).where(McpTool.id == tool_id).values(**values))


def usage_rows(**where) -> list[McpToolUsage]:
    with session_scope() as session:
        query = select(McpToolUsage).filter_by(**where).order_by(McpToolUsage.created_at)
        return list(session.scalars(query))


def _flush_usage() -> None:
    """Move buffered usage records into Postgres now, if this build buffers them (idempotent)."""
    try:
        from workers.usage_writer import flush_usage
    except ImportError:
        return
    flush_usage()


def wait_usage(count: int, **where) -> list[McpToolUsage]:
    """Usage is written asynchronously: flush, and wait (bounded) for `count` rows."""

    def enough() -> bool:
        _flush_usage()
        return len(usage_rows(**where)) >= count

    wait_for(enough, 15, f"{count} usage rows {where}", every=0.1)
    return usage_rows(**where)


def agent_headers(agent_type: str, role: str = "agent") -> tuple[dict[str, str], str]:
    caller_id = f"{agent_type}-{os.urandom(3).hex()}"
    _row, plaintext = insert_key(role, agent_type=agent_type, caller_id=caller_id)
    return bearer(plaintext), caller_id


# --- permissions ---------------------------------------------------------------------------

RULES = {  # tool → rules; the agent calling is a "researcher"
    "echo": {"researcher": True, "*": False},  # explicit allow beats wildcard deny
    "add": {"researcher": False, "*": True},  # explicit deny beats wildcard allow
    "pid": {"*": True},  # wildcard allow beats any default
    "charge": {"*": False},  # wildcard deny beats any default
    # sleep: no rule, PERMISSION_DEFAULT decides
}
ARGS = {"echo": {"text": "p"}, "add": {"a": 1, "b": 2}, "pid": {}, "charge": {"amount": 1}}
EXPECTED = {  # PERMISSION_DEFAULT → tool → (allowed, source)
    "allow": {
        "echo": (True, "explicit"),
        "add": (False, "explicit"),
        "pid": (True, "wildcard"),
        "charge": (False, "wildcard"),
        "sleep": (True, "default"),
    },
    "deny": {
        "echo": (True, "explicit"),
        "add": (False, "explicit"),
        "pid": (True, "wildcard"),
        "charge": (False, "wildcard"),
        "sleep": (False, "default"),
    },
}


@pytest.mark.parametrize("default", ["allow", "deny"])
def test_permission_precedence_explicit_then_wildcard_then_default(
    default, echo, gateway, slug, settings_env
):
    settings_env(PERMISSION_DEFAULT=default)
    set_rules(gateway, slug, RULES)
    headers, caller_id = agent_headers("researcher")
    denied = set()
    for tool, (allowed, source) in EXPECTED[default].items():
        response = gateway.call(f"{slug}.{tool}", ARGS.get(tool, {"seconds": 0}), headers=headers)
        if allowed:
            assert response.status_code == 200, (tool, response.json)
            assert response.json["status"] == "succeeded"
            continue
        denied.add(tool)
        assert response.status_code == 403, (tool, response.json)
        error = response.json["error"]
        assert error["code"] == "permission_denied"
        assert f"{slug}.{tool}" in error["message"] and "researcher" in error["message"]
        assert error["details"]["source"] == source
    rows = wait_usage(len(denied), server_slug=slug, status="denied")
    assert {row.tool_name for row in rows} == denied
    for row in rows:
        assert (row.caller_id, row.agent_type) == (caller_id, "researcher")
        assert row.cached is False and row.duration_ms == 0 and row.job_id is None
        assert row.error_code == "permission_denied"


def test_on_behalf_of_is_checked_as_that_agent_type(echo, gateway, slug, counter):
    set_rules(gateway, slug, {"echo": {"service": True, "auditor": False}})
    headers, _ = agent_headers("service", role="service")
    auditor = {"callerId": "aud-1", "callerType": "agent", "agentType": "auditor"}
    refused = gateway.call(f"{slug}.echo", {"text": "obo"}, headers=headers, onBehalfOf=auditor)
    assert refused.status_code == 403
    assert "auditor" in refused.json["error"]["message"]
    assert gateway.call(f"{slug}.echo", {"text": "obo"}, headers=headers).status_code == 200
    (row,) = wait_usage(1, server_slug=slug, status="denied")
    assert (row.caller_id, row.caller_type, row.agent_type) == ("aud-1", "agent", "auditor")
    assert counter("echo obo") == 1


def test_admin_keys_are_subject_to_the_matrix(echo, gateway, slug, counter):
    set_rules(gateway, slug, {"echo": {"admin": False}})
    response = gateway.call(f"{slug}.echo", {"text": "adm"})
    assert response.status_code == 403
    assert response.json["error"]["details"] == {
        "tool": f"{slug}.echo",
        "agentType": "admin",
        "source": "explicit",
    }
    assert counter("echo") == 0


def test_a_permission_change_applies_to_the_very_next_call(echo, gateway, slug):
    headers, _ = agent_headers("researcher")
    assert gateway.call(f"{slug}.echo", {"text": "1"}, headers=headers).status_code == 200
    set_rules(gateway, slug, {"echo": {"researcher": False}})
    assert gateway.call(f"{slug}.echo", {"text": "1"}, headers=headers).status_code == 403
    set_rules(gateway, slug, {"echo": {"researcher": True}})
    assert gateway.call(f"{slug}.echo", {"text": "1"}, headers=headers).status_code == 200


# --- argument validation -------------------------------------------------------------------

NESTED_SCHEMA = {
    "type": "object",
    "properties": {
        "text": {"type": "string"},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
                "required": ["sku", "qty"],
            },
        },
    },
    "required": ["text", "items"],
}


def test_invalid_arguments_are_422_with_every_failing_path_and_nothing_runs(
    echo, gateway, slug, counter
):
    plain = gateway.call(f"{slug}.echo", {"text": 5})
    assert plain.status_code == 422
    assert plain.json["error"]["code"] == "invalid_arguments"
    assert [e["path"] for e in plain.json["error"]["details"]["errors"]] == ["/text"]

    change_tool_row(echo["echo"], input_schema=NESTED_SCHEMA, definition_hash="nested-v1")
    bad = {"text": 1, "items": [{"sku": "a", "qty": "two"}, {"qty": 1}, "x"]}
    response = gateway.call(f"{slug}.echo", bad)
    assert response.status_code == 422, response.json
    errors = response.json["error"]["details"]["errors"]
    assert [(e["path"], e["keyword"]) for e in errors] == [
        ("/items/0/qty", "type"),
        ("/items/1/sku", "required"),
        ("/items/2", "type"),
        ("/text", "type"),
    ]
    assert all(e["message"] for e in errors)
    assert counter("echo") == 0


def test_a_tool_with_an_invalid_input_schema_is_left_to_the_server(echo, gateway, slug):
    change_tool_row(echo["add"], input_schema={"type": "nope"}, definition_hash="broken-v1")
    response = gateway.call(f"{slug}.add", {"a": 2, "b": 3})
    assert response.status_code == 200, response.json
    assert response.json["result"]["structuredContent"] == {"result": 5}
    assert gateway.call(f"{slug}.echo", {"text": 5}).status_code == 422  # others still checked


# --- result cache --------------------------------------------------------------------------


def test_a_cache_hit_is_answered_without_reaching_the_server(echo, gateway, slug, counter):
    first = gateway.call(f"{slug}.echo", {"text": "c"})
    assert first.status_code == 200 and first.json["cached"] is False
    hit = gateway.call(f"{slug}.echo", {"text": "c"})
    assert hit.status_code == 200
    assert hit.json["cached"] is True and hit.json["status"] == "succeeded"
    assert hit.json["result"] == first.json["result"]
    assert hit.json["jobId"] != first.json["jobId"] and hit.json["toolId"] == echo["echo"]
    assert counter("echo c") == 1
    stored = gateway.job(hit.json["jobId"])
    assert stored.status_code == 200 and stored.json["cached"] is True
    hit_ttl = get_redis().ttl(jobs.job_key(hit.json["jobId"]))
    assert 0 < hit_ttl <= jobs.HIT_RECORD_TTL_SECONDS  # hits must not fill Redis for a day
    (row,) = wait_usage(1, job_id=hit.json["jobId"])
    assert row.cached is True and row.status == "success"
    assert gateway.call(f"{slug}.echo", {"text": "other"}).json["cached"] is False


def test_bypass_and_refresh_reach_the_server(echo, gateway, slug, counter):
    call = gateway.call
    assert call(f"{slug}.echo", {"text": "b"}, cache="bypass").json["cached"] is False
    assert call(f"{slug}.echo", {"text": "b"}, cache="bypass").json["cached"] is False
    assert counter("echo b") == 2
    assert call(f"{slug}.echo", {"text": "b"}).json["cached"] is False  # bypass wrote nothing
    assert counter("echo b") == 3
    assert call(f"{slug}.echo", {"text": "b"}, cache="refresh").json["cached"] is False
    assert counter("echo b") == 4
    assert call(f"{slug}.echo", {"text": "r"}, cache="refresh").json["cached"] is False
    assert call(f"{slug}.echo", {"text": "r"}).json["cached"] is True  # refresh wrote
    assert counter("echo r") == 1


def test_a_tool_that_is_not_read_only_is_never_cached_under_readonly(echo, gateway, slug, counter):
    for _ in range(2):
        job = gateway.call(f"{slug}.charge", {"amount": 7}).json
        assert job["status"] == "succeeded" and job["cached"] is False
    assert counter("charge 7") == 2


def test_cache_ttl_zero_opts_out_and_a_positive_one_opts_in(echo, gateway, slug, counter):
    set_tool(gateway, echo["echo"], cacheTtlSeconds=0)
    set_tool(gateway, echo["charge"], cacheTtlSeconds=60)
    set_tool(gateway, echo["fail"], cacheTtlSeconds=60)
    for _ in range(2):
        assert gateway.call(f"{slug}.echo", {"text": "z"}).json["cached"] is False
    assert counter("echo z") == 2
    assert gateway.call(f"{slug}.charge", {"amount": 3}).json["cached"] is False
    assert gateway.call(f"{slug}.charge", {"amount": 3}).json["cached"] is True
    assert counter("charge 3") == 1
    charge = find_tool(get_settings().default_org_id, f"{slug}.charge")
    assert 0 < get_redis().ttl(result_key(charge, {"amount": 3})) <= 60
    for _ in range(2):  # isError results are never stored
        job = gateway.call(f"{slug}.fail", {"message": "no"}).json
        assert job["result"]["isError"] is True and job["cached"] is False


def test_cache_policy_none_caches_nothing_and_all_caches_every_tool(
    echo, gateway, slug, counter, settings_env
):
    set_tool(gateway, echo["pid"], cacheTtlSeconds=60)
    settings_env(CACHE_POLICY="none")
    for _ in range(2):
        assert gateway.call(f"{slug}.echo", {"text": "n"}).json["cached"] is False
        assert gateway.call(f"{slug}.pid").json["cached"] is False
    assert counter("echo n") == 2
    settings_env(CACHE_POLICY="all")
    assert gateway.call(f"{slug}.charge", {"amount": 9}).json["cached"] is False
    assert gateway.call(f"{slug}.charge", {"amount": 9}).json["cached"] is True
    assert counter("charge 9") == 1


def test_a_changed_definition_never_serves_the_old_entry(echo, gateway, slug, counter):
    assert gateway.call(f"{slug}.echo", {"text": "d"}).json["cached"] is False
    assert gateway.call(f"{slug}.echo", {"text": "d"}).json["cached"] is True
    change_tool_row(echo["echo"], definition_hash="changed-v2")
    assert gateway.call(f"{slug}.echo", {"text": "d"}).json["cached"] is False
    assert gateway.call(f"{slug}.echo", {"text": "d"}).json["cached"] is True
    assert counter("echo d") == 2


def test_concurrent_identical_misses_reach_the_server_once(echo, gateway, slug, counter):
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(gateway.call, f"{slug}.sleep", {"seconds": 0.5}) for _ in range(16)]
        jobs = [f.result().json for f in futures]
    assert all(job["status"] == "succeeded" for job in jobs), jobs
    assert sorted(job["cached"] for job in jobs) == [False] + [True] * 15
    assert counter("sleep 0.5") == 1


def test_a_follower_runs_the_call_itself_when_the_leader_ends_without_a_result(
    echo, gateway, slug, counter
):
    args = {"seconds": 0.6}
    leader = gateway.call(f"{slug}.sleep", args, mode="async", timeoutMs=150)
    assert leader.status_code == 202
    follower = gateway.call(f"{slug}.sleep", args)
    assert gateway.job(leader.json["jobId"]).json["status"] == "timeout"
    assert follower.status_code == 200
    assert follower.json["status"] == "succeeded" and follower.json["cached"] is False
    assert counter("sleep 0.6") == 1  # the leader's run was cancelled before it counted
