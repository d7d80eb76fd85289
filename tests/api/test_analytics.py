"""GET /api/v1/analytics/usage: the numbers equal what the test recorded, for every groupBy and
filter, within the window asked for, for the caller's org only; bad parameters are 422; only
admins may ask.

Rows are inserted straight into the table (known times and durations), except one test that
goes through the real pipeline (record_usage → stream → flush_usage).
"""

from __future__ import annotations

import importlib
import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from common import analytics
from common.db import get_engine, session_scope
from common.ids import new_id
from common.models import McpServer, McpToolUsage, McpUsageRollup
from common.usage import record_usage
from tests.factories import bearer, insert_key, insert_server, insert_tool
from workers.usage_writer import flush_usage

URL = "/api/v1/analytics/usage"
NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0) - timedelta(hours=1)
GROUP_FIELDS = {
    "key",
    "label",
    "count",
    "success",
    "error",
    "timeout",
    "denied",
    "cached",
    "cacheHitRate",
    "avgDurationMs",
    "p50DurationMs",
    "p95DurationMs",
}


def row(**fields: Any) -> dict[str, Any]:
    values = dict(
        id=new_id(),
        org_id="default",
        tool_id="t-echo",
        server_id="s-demo",
        tool_name="echo",
        server_slug="demo",
        job_id=new_id(),
        caller_id="alice",
        caller_type="agent",
        agent_type="researcher",
        duration_ms=10,
        status="success",
        cached=False,
        truncated=False,
        created_at=NOW,
    )
    values.update(fields)
    return values


def insert(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    with session_scope() as session:
        session.add_all(McpToolUsage(**r) for r in rows)
    return rows


def percentile_cont(values: list[int], fraction: float) -> float:
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def expected(rows: list[dict[str, Any]], key, label) -> dict[Any, dict[str, Any]]:
    """What the endpoint must answer, computed here the slow way."""
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[key(r)].append(r)
    answer = {}
    for k, members in groups.items():
        durations = [m["duration_ms"] for m in members]
        cached = sum(m["cached"] for m in members)
        answer[k] = {
            "key": k,
            "label": label(members[0]),
            "count": len(members),
            **{s: sum(m["status"] == s for m in members) for s in STATUSES},
            "cached": cached,
            "cacheHitRate": pytest.approx(cached / len(members), abs=1e-4),
            "avgDurationMs": pytest.approx(sum(durations) / len(durations), abs=0.01),
            "p50DurationMs": pytest.approx(percentile_cont(durations, 0.5), abs=0.01),
            "p95DurationMs": pytest.approx(percentile_cont(durations, 0.95), abs=0.01),
        }
    return answer


STATUSES = ("success", "error", "timeout", "denied")


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def bucket(moment: datetime, unit: str) -> str:
    start = moment.replace(minute=0, second=0, microsecond=0)
    if unit == "day":
        start = start.replace(hour=0)
    return iso(start)


KEYS = {
    "tool": (lambda r: r["tool_id"], lambda r: f"{r['server_slug']}.{r['tool_name']}"),
    "server": (lambda r: r["server_id"], lambda r: r["server_slug"]),
    "caller": (lambda r: r["caller_id"], lambda r: r["caller_id"]),
    "status": (lambda r: r["status"], lambda r: r["status"]),
    "hour": (lambda r: bucket(r["created_at"], "hour"), lambda r: bucket(r["created_at"], "hour")),
    "day": (lambda r: bucket(r["created_at"], "day"), lambda r: bucket(r["created_at"], "day")),
}


def varied_row(n: int, tool: tuple, **fields: Any) -> dict[str, Any]:
    """Row number `n` of a varied set: `tool` is (tool_id, server_id, name, slug); caller,
    status and cached cycle with n at different periods."""
    tool_id, server_id, name, slug = tool
    return row(
        tool_id=tool_id,
        server_id=server_id,
        tool_name=name,
        server_slug=slug,
        caller_id=("alice", "bob", "carol")[n % 7 % 3],
        status=STATUSES[n % 11 % 4],
        cached=n % 5 == 0,
        **fields,
    )


@pytest.fixture
def mixed_usage() -> list[dict[str, Any]]:
    """A varied day of usage: 3 tools on 2 servers, 3 callers, every status, some cached."""
    tools = [("t-echo", "s-demo", "echo", "demo"), ("t-add", "s-demo", "add", "demo")]
    tools.append(("t-get", "s-web", "get", "web"))
    rows = []
    for n in range(60):
        rows.append(
            varied_row(
                n,
                tools[n % 3],
                duration_ms=(n * 37) % 500 + 1,
                created_at=NOW - timedelta(minutes=17 * n),  # spans about 17 hours
            )
        )
    return insert(rows)


def get(client, headers, **params):
    return client.get(URL, query_string=params, headers=headers)


@pytest.mark.parametrize("group_by", sorted(KEYS))
def test_each_grouping_answers_exactly_what_was_recorded(
    client, admin_headers, mixed_usage, group_by
):
    key, label = KEYS[group_by]

    response = get(client, admin_headers, groupBy=group_by)

    assert response.status_code == 200, response.json
    body = response.json
    assert body["groupBy"] == group_by
    assert {g["key"]: g for g in body["groups"]} == expected(mixed_usage, key, label)
    assert all(set(g) == GROUP_FIELDS for g in body["groups"])


def test_groups_come_busiest_first_and_time_buckets_oldest_first(
    client, admin_headers, mixed_usage
):
    by_caller = get(client, admin_headers, groupBy="caller").json["groups"]
    by_hour = get(client, admin_headers, groupBy="hour").json["groups"]

    assert [g["count"] for g in by_caller] == sorted((g["count"] for g in by_caller), reverse=True)
    assert [g["key"] for g in by_hour] == sorted(g["key"] for g in by_hour)


def test_tool_is_the_default_grouping_and_the_default_window_is_the_last_24_hours(
    client, admin_headers
):
    now = datetime.now(UTC)
    insert([row(created_at=now - timedelta(hours=23)), row(created_at=now - timedelta(hours=25))])

    body = get(client, admin_headers).json

    assert body["groupBy"] == "tool"
    assert [g["count"] for g in body["groups"]] == [1]
    start, end = (datetime.fromisoformat(body[k]) for k in ("from", "to"))
    assert end - start == timedelta(hours=24)
    assert abs(end - now) < timedelta(seconds=30)
    assert body["to"].endswith("Z")


def test_the_window_is_from_inclusive_to_exclusive(client, admin_headers):
    start = NOW - timedelta(hours=3)
    end = NOW - timedelta(hours=1)
    insert(
        [
            row(created_at=start - timedelta(microseconds=1), job_id="before"),
            row(created_at=start, duration_ms=1),
            row(created_at=end - timedelta(microseconds=1), duration_ms=3),
            row(created_at=end, job_id="at-end"),
        ]
    )

    groups = get(client, admin_headers, **{"from": iso(start), "to": iso(end)}).json["groups"]

    assert [(g["count"], g["p50DurationMs"]) for g in groups] == [(2, 2.0)]


def test_only_from_given_reaches_until_now(client, admin_headers):
    insert([row(created_at=NOW - timedelta(days=3)), row(created_at=NOW - timedelta(days=5))])

    body = get(client, admin_headers, **{"from": iso(NOW - timedelta(days=4))}).json

    assert [g["count"] for g in body["groups"]] == [1]


def test_filters_narrow_the_rows_counted(client, admin_headers, mixed_usage):
    cases = [
        ({"serverId": "s-web"}, lambda r: r["server_id"] == "s-web"),
        ({"toolId": "t-add"}, lambda r: r["tool_id"] == "t-add"),
        ({"callerId": "bob"}, lambda r: r["caller_id"] == "bob"),
        ({"status": "timeout"}, lambda r: r["status"] == "timeout"),
        (
            {"toolId": "t-echo", "callerId": "alice"},
            lambda r: r["tool_id"] == "t-echo" and r["caller_id"] == "alice",
        ),
    ]
    for params, keep in cases:
        response = get(client, admin_headers, groupBy="status", **params)
        wanted = expected([r for r in mixed_usage if keep(r)], *KEYS["status"])
        assert {g["key"]: g for g in response.json["groups"]} == wanted, params


def test_another_orgs_usage_is_invisible(client, admin_headers):
    insert([row(org_id="default", caller_id="ours"), row(org_id="other", caller_id="theirs")])
    insert([row(org_id="other", caller_id="theirs", tool_id="t-secret")])
    _, other_admin = insert_key(role="admin", org_id="other")

    ours = get(client, admin_headers, groupBy="caller").json["groups"]
    theirs = get(client, bearer(other_admin), groupBy="caller").json["groups"]
    filtered = get(client, admin_headers, toolId="t-secret").json["groups"]

    assert [(g["key"], g["count"]) for g in ours] == [("ours", 1)]
    assert [(g["key"], g["count"]) for g in theirs] == [("theirs", 2)]
    assert filtered == []


def test_usage_of_deleted_servers_and_tools_still_counts(client, admin_headers):
    server = insert_server("gone")
    tool = insert_tool(server, "vanished")
    insert([row(tool_id=tool.id, server_id=server.id, tool_name="vanished", server_slug="gone")])
    with session_scope() as session:
        session.delete(session.get(McpServer, server.id))  # cascades to its tools

    by_tool = get(client, admin_headers, groupBy="tool").json["groups"]
    by_server = get(client, admin_headers, groupBy="server").json["groups"]

    assert [(g["key"], g["label"], g["count"]) for g in by_tool] == [(tool.id, "gone.vanished", 1)]
    assert [(g["key"], g["label"]) for g in by_server] == [(server.id, "gone")]


def test_a_recorded_call_shows_up_once_flushed(client, admin_headers):
    for status, cached in (("success", True), ("success", False), ("denied", False)):
        record_usage(
            org_id="default",
            tool_id="t-live",
            server_id="s-live",
            tool_name="echo",
            server_slug="live",
            job_id=new_id(),
            caller_id="agent-7",
            caller_type="agent",
            agent_type="researcher",
            input={"text": "x"},
            output=None,
            duration_ms=40,
            status=status,
            cached=cached,
        )
    flush_usage()

    (group,) = get(client, admin_headers).json["groups"]

    assert (group["key"], group["label"], group["count"]) == ("t-live", "live.echo", 3)
    assert (group["success"], group["denied"], group["cached"]) == (2, 1, 1)
    assert group["cacheHitRate"] == pytest.approx(1 / 3, abs=1e-4)


def test_an_offset_whose_plus_arrived_as_a_space_is_read_as_plus(client, admin_headers):
    insert([row(created_at=NOW)])
    start = (NOW - timedelta(hours=1)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")

    response = client.get(f"{URL}?from={start}+00:00", headers=admin_headers)

    assert response.status_code == 200, response.json
    assert response.json["from"] == start + "Z"
    assert [g["count"] for g in response.json["groups"]] == [1]


def test_times_without_an_offset_are_utc(client, admin_headers):
    start = NOW - timedelta(hours=2)

    body = get(client, admin_headers, **{"from": start.strftime("%Y-%m-%dT%H:%M:%S")}).json

    assert body["from"] == iso(start)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"groupBy": "week"}, "groupBy"),
        ({"groupBy": ""}, "groupBy"),
        ({"status": "ok"}, "status"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2024-13-01T00:00:00Z"}, "to"),
        ({"from": "2024-02-01T00:00:00Z", "to": "2024-01-01T00:00:00Z"}, "from"),
        ({"from": "2999-01-01T00:00:00Z"}, "from"),
        ({"to": "0001-01-01T00:00:00Z"}, "to"),
        ({"toolId": ""}, "toolId"),
        ({"callerId": "x" * 201}, "callerId"),
        ({"limit": "10"}, "limit"),
        ({"groupby": "tool"}, "groupby"),
    ],
)
def test_bad_parameters_are_422_naming_the_field(client, admin_headers, params, field):
    response = get(client, admin_headers, **params)

    assert response.status_code == 422, response.json
    error = response.json["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"]["fields"], error
    assert error["details"]["fields"][field]


@pytest.mark.parametrize("role", ["agent", "service"])
def test_only_admins_may_read_analytics(client, role):
    _, key = insert_key(role=role)

    response = get(client, bearer(key))

    assert response.status_code == 403
    assert response.json["error"]["code"] == "forbidden"


def test_no_key_is_401(client):
    assert get(client, {}).status_code == 401


def test_the_endpoint_is_in_the_openapi_document(client):
    spec = client.get("/openapi.json").json

    operation = spec["paths"]["/api/v1/analytics/usage"]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert {"from", "to", "serverId", "toolId", "callerId", "status", "groupBy"} <= names


def test_a_call_the_permission_matrix_refuses_is_counted_as_denied(client, admin_headers):
    server = insert_server("guarded")
    tool = insert_tool(server, "secret_op")
    rule = {"toolId": tool.id, "agentType": "researcher", "allowed": False}
    written = client.put("/api/v1/permissions", json={"rules": [rule]}, headers=admin_headers)
    assert written.status_code == 200, written.json
    _, agent_key = insert_key(role="agent")  # agentType researcher

    refused = client.post(
        "/api/v1/tools/call", json={"tool": "guarded.secret_op"}, headers=bearer(agent_key)
    )
    flush_usage()

    assert refused.status_code == 403
    (group,) = get(client, admin_headers, groupBy="tool").json["groups"]
    assert (group["key"], group["label"], group["count"], group["denied"]) == (
        tool.id,
        "guarded.secret_op",
        1,
        1,
    )


def test_a_query_that_runs_too_long_is_503_not_500(client, admin_headers, monkeypatch):
    route = importlib.import_module("api.routes.analytics")  # the package exports its blp

    with get_engine().begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO mcp_tool_usage (id, org_id, tool_id, tool_name, server_slug, caller_id,"
            " caller_type, agent_type, duration_ms, status, cached, truncated, created_at)"
            " SELECT 'bulk' || i, 'default', 't' || (i %% 50), 'echo', 'demo', 'c' || (i %% 500),"
            " 'agent', 'researcher', i %% 1000, 'success', false, false, now() - interval '1 hour'"
            " FROM generate_series(1, 50000) AS i"
        )
    monkeypatch.setattr(route, "STATEMENT_TIMEOUT_MS", 1)

    response = get(client, admin_headers, groupBy="caller")

    assert response.status_code == 503
    assert response.json["error"]["code"] == "query_timeout"


# --- wide windows: the rollup (common.analytics, migration 0003) -------------------------------

ROLLUP_DIMS = {
    "all": (lambda r: "", "hour"),
    "tool": (lambda r: r["tool_id"] or "", "day"),
    "server": (lambda r: r["server_id"] or "", "day"),
    "caller": (lambda r: r["caller_id"], "day"),
    "status": (lambda r: r["status"], "day"),
}


def rollup_from_rows(rows: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """What mcp_usage_rollup must hold for these usage rows, computed here the slow way."""
    cells: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        for dim, (key, grain) in ROLLUP_DIMS.items():
            at = r["created_at"].astimezone(UTC).replace(minute=0, second=0, microsecond=0)
            period = at.replace(hour=0) if grain == "day" else at
            cell = cells.setdefault(
                (r["org_id"], dim, period, key(r)),
                {"count": 0, **dict.fromkeys(STATUSES, 0), "cached": 0, "sum": 0, "hist": {}},
            )
            cell["count"] += 1
            cell[r["status"]] += 1
            cell["cached"] += r["cached"]
            cell["sum"] += r["duration_ms"]
            bucket = analytics.rollup_bucket(r["duration_ms"])
            cell["hist"][bucket] = cell["hist"].get(bucket, 0) + 1
    return cells


def rollup_in_db() -> dict[tuple, dict[str, Any]]:
    with session_scope() as session:
        stored = session.scalars(select(McpUsageRollup)).all()
        return {
            (c.org_id, c.dim, c.period, c.key): {
                "count": c.count,
                **{s: getattr(c, s) for s in STATUSES},
                "cached": c.cached,
                "sum": c.duration_sum,
                "hist": {b: n for b, n in enumerate(c.histogram) if n},
            }
            for c in stored
        }


def spread_usage(days: int = 3, every: timedelta = timedelta(minutes=37)) -> list[dict[str, Any]]:
    """Usage over several days (partial days at both ends), durations from 0 ms to ~9 s."""
    rows, n, moment = [], 0, NOW - timedelta(days=days, hours=5)
    tools = [("t-echo", "s-demo", "echo", "demo"), ("t-add", "s-demo", "add", "demo")]
    tools += [("t-get", "s-web", "get", "web"), (None, None, "gone", "ghost")]
    while moment < NOW:
        duration_ms = (n * n * 7919) % 9000 if n % 3 else n % 25
        rows.append(varied_row(n, tools[n % 4], duration_ms=duration_ms, created_at=moment))
        n += 1
        moment += every
    return insert(rows)


def test_the_rollup_follows_every_insert_delete_update_and_truncate():
    rows = spread_usage(days=2)
    rows += insert([row(org_id="other", created_at=NOW - timedelta(hours=30), duration_ms=12345)])
    assert rollup_in_db() == rollup_from_rows(rows)

    gone, changed = {r["id"] for r in rows[::5]}, rows[1]["id"]
    with get_engine().begin() as conn:
        conn.exec_driver_sql(  # as the usage writer inserts: a duplicate id adds nothing
            "INSERT INTO mcp_tool_usage (id, org_id, tool_name, server_slug, caller_id,"
            " caller_type, agent_type, duration_ms, status, cached, truncated, created_at)"
            " VALUES (%s, 'default', 'x', 'y', 'z', 'agent', 'a', 5, 'success', false, false,"
            " now()) ON CONFLICT (id) DO NOTHING",
            (rows[2]["id"],),
        )
        conn.exec_driver_sql("DELETE FROM mcp_tool_usage WHERE id = ANY(%s)", (list(gone),))
        conn.exec_driver_sql(
            "UPDATE mcp_tool_usage SET duration_ms = duration_ms + 1000, status = 'error'"
            " WHERE id = %s",
            (changed,),
        )
    rows = [r for r in rows if r["id"] not in gone]
    rows = [
        {**r, "duration_ms": r["duration_ms"] + 1000, "status": "error"}
        if r["id"] == changed
        else r
        for r in rows
    ]
    assert rollup_in_db() == rollup_from_rows(rows)

    with get_engine().begin() as conn:
        conn.exec_driver_sql("TRUNCATE mcp_tool_usage")
    assert rollup_in_db() == {}


def _approximately(groups: dict[Any, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """The exact answer, with percentiles as the rollup may give them (and, as the raw path,
    no label for usage without a tool or server id)."""
    if None in groups:
        groups[None]["label"] = None
    for group in groups.values():
        for name in ("p50DurationMs", "p95DurationMs"):
            exact = group[name].expected
            group[name] = pytest.approx(exact, rel=analytics.ROLLUP_MAX_ERROR + 1e-9, abs=0.01)
    return groups


@pytest.mark.parametrize("group_by", sorted(KEYS))
def test_a_wide_window_answers_from_the_rollup_within_its_error_bound(
    client, admin_headers, monkeypatch, group_by
):
    rows = spread_usage()
    key, label = KEYS[group_by]
    start = NOW - timedelta(days=3, hours=2, minutes=10)
    window = {"from": iso(start), "to": iso(NOW)}
    rows = [r for r in rows if start <= r["created_at"] < NOW]
    monkeypatch.setattr(analytics, "RAW_MAX_ROWS", 0)
    monkeypatch.setattr(analytics, "_raw_groups", None)  # the raw path is not taken

    body = get(client, admin_headers, groupBy=group_by, **window).json

    assert body["groupBy"] == group_by
    assert {g["key"]: g for g in body["groups"]} == _approximately(expected(rows, key, label))
    keys = [g["key"] for g in body["groups"]]
    if group_by in ("hour", "day"):
        assert keys == sorted(keys)
    else:
        order = [(-g["count"], g["key"] is None, g["key"] or "") for g in body["groups"]]
        assert order == sorted(order)


def test_durations_under_20_ms_are_exact_from_the_rollup(client, admin_headers, monkeypatch):
    durations = [0, 1, 2, 3, 5, 8, 13, 19, 4, 4, 7, 11]
    start = NOW - timedelta(days=3)
    insert(
        [
            row(duration_ms=d, created_at=start + timedelta(hours=5 * i))
            for i, d in enumerate(durations)
        ]
    )
    monkeypatch.setattr(analytics, "RAW_MAX_ROWS", 0)
    monkeypatch.setattr(analytics, "_raw_groups", None)

    (group,) = get(client, admin_headers, **{"from": iso(start), "to": iso(NOW)}).json["groups"]

    assert group["p50DurationMs"] == percentile_cont(durations, 0.5)
    assert group["p95DurationMs"] == pytest.approx(percentile_cont(durations, 0.95), abs=0.01)


def test_filtered_and_narrow_windows_stay_exact(client, admin_headers, monkeypatch):
    rows = spread_usage(days=2)
    monkeypatch.setattr(analytics, "RAW_MAX_ROWS", 0)
    start = NOW - timedelta(days=2, hours=3)
    window = {"from": iso(start), "to": iso(NOW)}
    rows = [r for r in rows if start <= r["created_at"] < NOW]

    filtered = get(client, admin_headers, groupBy="status", callerId="bob", **window).json
    narrow = get(
        client, admin_headers, groupBy="caller", **{"from": iso(NOW - timedelta(hours=20))}
    )

    bob = [r for r in rows if r["caller_id"] == "bob"]
    assert {g["key"]: g for g in filtered["groups"]} == expected(bob, *KEYS["status"])
    recent = [r for r in rows if r["created_at"] >= NOW - timedelta(hours=20)]
    assert {g["key"]: g for g in narrow.json["groups"]} == expected(recent, *KEYS["caller"])


def test_the_bucket_function_in_sql_is_the_one_percentiles_are_read_with():
    durations = [*range(0, 3000), 10**4, 99_999, 300_000, 3_600_000, 2**31 - 1, -5]
    durations += [math.ceil(20 * 1.05**k) + delta for k in range(380) for delta in (-1, 0)]
    with get_engine().connect() as conn:
        in_sql = conn.exec_driver_sql(
            "SELECT d, mcp_usage_bucket(d) FROM unnest(%s::integer[]) AS d", (durations,)
        ).all()

    assert {d: b for d, b in in_sql} == {d: analytics.rollup_bucket(d) for d in durations}
    for d in durations:
        value = analytics.bucket_value(analytics.rollup_bucket(d))
        if d < analytics.ROLLUP_EXACT_BELOW:
            assert value == max(d, 0)
        else:
            assert abs(value - d) / d <= analytics.ROLLUP_MAX_ERROR


@pytest.mark.parametrize("group_by", ["tool", "hour"])
def test_a_window_at_the_end_of_time_is_answered_not_a_500(client, admin_headers, group_by):
    params = {"from": "9999-12-31T23:30:00Z", "to": "9999-12-31T23:59:00Z", "groupBy": group_by}
    response = get(client, admin_headers, **params)
    assert response.status_code == 200, response.json
    assert response.json["groups"] == []
