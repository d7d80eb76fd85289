"""GET/PUT /api/v1/tools: the registry as JSON, scoped to the caller's org, filtered for agent
keys by the permission matrix (in SQL, so pages stay exact), and admin-only changes.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from common.db import session_scope
from common.models import McpTool
from common.permissions import write_rules
from tests.factories import bearer, insert_key, insert_server, insert_tool

TOOL_FIELDS = {
    "id",
    "serverId",
    "server",
    "name",
    "tool",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
    "isEnabled",
    "disabledReason",
    "cacheTtlSeconds",
    "definitionHash",
    "lastSeenAt",
    "removedAt",
    "createdAt",
    "updatedAt",
}


def set_rules(*rules: tuple[str, str, bool]) -> None:
    with session_scope() as session:
        write_rules(session, list(rules))


def agent_headers(agent_type: str = "researcher", org_id: str = "default") -> dict[str, str]:
    return bearer(insert_key("agent", org_id=org_id, agent_type=agent_type)[1])


def list_tools(client, headers, **query) -> dict:
    response = client.get("/api/v1/tools", headers=headers, query_string=query)
    assert response.status_code == 200, response.json
    return response.json


def names(page: dict) -> list[str]:
    return sorted(item["tool"] for item in page["items"])


def db_tool(tool_id: str) -> McpTool:
    with session_scope() as session:
        return session.get(McpTool, tool_id)


def test_a_tool_is_listed_with_every_contract_field(client, admin_headers):
    server = insert_server("demo")
    tool = insert_tool(
        server, "echo", output_schema={"type": "object"}, cache_ttl_seconds=30, annotations={}
    )
    page = list_tools(client, admin_headers)
    assert page["nextCursor"] is None
    [item] = page["items"]
    assert set(item) == TOOL_FIELDS
    assert item["id"] == tool.id
    assert item["serverId"] == server.id
    assert item["server"] == "demo"
    assert item["name"] == "echo"
    assert item["tool"] == "demo.echo"
    assert item["inputSchema"] == tool.input_schema
    assert item["outputSchema"] == {"type": "object"}
    assert item["isEnabled"] is True
    assert item["disabledReason"] is None
    assert item["cacheTtlSeconds"] == 30
    assert item["definitionHash"] == "h-echo"
    assert item["removedAt"] is None
    assert datetime.fromisoformat(item["createdAt"])


def test_a_tool_name_with_dots_keeps_them_after_the_server_slug(client, admin_headers):
    insert_tool(insert_server("demo"), "files.read")
    assert names(list_tools(client, admin_headers)) == ["demo.files.read"]


def test_the_list_holds_only_the_callers_org_tools(client, admin_headers):
    insert_tool(insert_server("mine"), "echo")
    insert_tool(insert_server("theirs", org_id="other"), "echo")
    assert names(list_tools(client, admin_headers)) == ["mine.echo"]
    other_admin = bearer(insert_key("admin", org_id="other")[1])
    assert names(list_tools(client, other_admin)) == ["theirs.echo"]


def test_server_id_filter_keeps_that_servers_tools(client, admin_headers):
    alpha, beta = insert_server("alpha"), insert_server("beta")
    insert_tool(alpha, "a1"), insert_tool(alpha, "a2"), insert_tool(beta, "b1")
    assert names(list_tools(client, admin_headers, serverId=alpha.id)) == ["alpha.a1", "alpha.a2"]
    assert names(list_tools(client, admin_headers, serverId="no-such-server")) == []


def test_server_id_of_another_org_yields_nothing(client, admin_headers):
    theirs = insert_server("theirs", org_id="other")
    insert_tool(theirs, "echo")
    assert list_tools(client, admin_headers, serverId=theirs.id)["items"] == []


def test_enabled_filter_separates_enabled_from_disabled_tools(client, admin_headers):
    server = insert_server("demo")
    insert_tool(server, "on")
    insert_tool(server, "off", is_enabled=False, disabled_reason="admin")
    assert names(list_tools(client, admin_headers, enabled="true")) == ["demo.on"]
    assert names(list_tools(client, admin_headers, enabled="false")) == ["demo.off"]
    assert names(list_tools(client, admin_headers)) == ["demo.off", "demo.on"]


def test_removed_tools_are_hidden_unless_include_removed(client, admin_headers):
    server = insert_server("demo")
    insert_tool(server, "kept")
    insert_tool(server, "gone", removed_at=datetime.now(UTC))
    assert names(list_tools(client, admin_headers)) == ["demo.kept"]
    everything = list_tools(client, admin_headers, includeRemoved="true")
    assert names(everything) == ["demo.gone", "demo.kept"]
    gone = next(i for i in everything["items"] if i["name"] == "gone")
    assert gone["removedAt"] is not None


def test_pages_follow_the_cursor_without_gaps_or_repeats(client, admin_headers):
    server = insert_server("demo")
    ids = sorted(insert_tool(server, f"t{n}").id for n in range(5))
    seen, cursor, sizes = [], None, []
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = list_tools(client, admin_headers, **query)
        sizes.append(len(page["items"]))
        seen += [item["id"] for item in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert sizes == [2, 2, 1]
    assert seen == ids


@pytest.mark.parametrize(
    "query",
    [
        {"limit": 0},
        {"limit": 201},
        {"limit": "many"},
        {"enabled": "perhaps"},
        {"enable": "false"},  # a misspelt filter is an error, not a silent "no filter"
    ],
)
def test_bad_list_query_is_a_validation_error(client, admin_headers, query):
    response = client.get("/api/v1/tools", headers=admin_headers, query_string=query)
    assert response.status_code == 422
    assert response.json["error"]["code"] == "validation_error"


def test_the_list_needs_a_key(client):
    assert client.get("/api/v1/tools").status_code == 401


def test_an_agent_key_sees_only_tools_its_agent_type_may_call(client):
    server = insert_server("demo")
    open_tool = insert_tool(server, "open")
    explicit_deny = insert_tool(server, "explicit_deny")
    wildcard_deny = insert_tool(server, "wildcard_deny")
    rescued = insert_tool(server, "rescued")
    set_rules(
        (open_tool.id, "writer", False),  # another agent type's rule does not matter
        (explicit_deny.id, "researcher", False),
        (wildcard_deny.id, "*", False),
        (rescued.id, "*", False),
        (rescued.id, "researcher", True),
    )
    page = list_tools(client, agent_headers("researcher"))
    assert names(page) == ["demo.open", "demo.rescued"]
    writer_page = list_tools(client, agent_headers("writer"))
    assert names(writer_page) == ["demo.explicit_deny"]


def test_an_agent_key_under_default_deny_sees_only_explicitly_allowed_tools(client, settings_env):
    settings_env(PERMISSION_DEFAULT="deny")
    server = insert_server("demo")
    insert_tool(server, "unruled")
    allowed = insert_tool(server, "allowed")
    everyone = insert_tool(server, "everyone")
    set_rules((allowed.id, "researcher", True), (everyone.id, "*", True))
    assert names(list_tools(client, agent_headers())) == ["demo.allowed", "demo.everyone"]


def test_agent_filtering_keeps_pages_full_and_exact(client):
    server = insert_server("demo")
    tools = sorted((insert_tool(server, f"t{n}") for n in range(6)), key=lambda t: t.id)
    set_rules(*[(t.id, "researcher", False) for t in tools[::2]])
    headers = agent_headers()
    first = list_tools(client, headers, limit=2)
    second = list_tools(client, headers, limit=2, cursor=first["nextCursor"])
    assert [i["id"] for i in first["items"]] == [tools[1].id, tools[3].id]
    assert [i["id"] for i in second["items"]] == [tools[5].id]
    assert second["nextCursor"] is None


def test_service_and_admin_keys_see_every_tool_whatever_the_matrix_says(client, admin_headers):
    tool = insert_tool(insert_server("demo"), "echo")
    set_rules((tool.id, "*", False))
    service = bearer(insert_key("service", agent_type="researcher")[1])
    assert names(list_tools(client, service)) == ["demo.echo"]
    assert names(list_tools(client, admin_headers)) == ["demo.echo"]


def test_get_one_tool_answers_it(client, admin_headers):
    tool = insert_tool(insert_server("demo"), "echo")
    response = client.get(f"/api/v1/tools/{tool.id}", headers=admin_headers)
    assert response.status_code == 200
    assert response.json["tool"] == "demo.echo"
    assert set(response.json) == TOOL_FIELDS


def test_get_one_tool_answers_a_removed_tool_too(client, admin_headers):
    tool = insert_tool(insert_server("demo"), "gone", removed_at=datetime.now(UTC))
    response = client.get(f"/api/v1/tools/{tool.id}", headers=admin_headers)
    assert response.status_code == 200
    assert response.json["removedAt"] is not None


def test_get_one_tool_of_another_org_is_404(client, admin_headers):
    tool = insert_tool(insert_server("theirs", org_id="other"), "echo")
    response = client.get(f"/api/v1/tools/{tool.id}", headers=admin_headers)
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


def test_get_an_unknown_tool_is_404(client, admin_headers):
    assert client.get("/api/v1/tools/nope", headers=admin_headers).status_code == 404


def test_an_agent_key_gets_404_for_a_tool_it_may_not_call(client):
    server = insert_server("demo")
    denied, allowed = insert_tool(server, "denied"), insert_tool(server, "allowed")
    set_rules((denied.id, "researcher", False))
    headers = agent_headers()
    assert client.get(f"/api/v1/tools/{denied.id}", headers=headers).status_code == 404
    assert client.get(f"/api/v1/tools/{allowed.id}", headers=headers).status_code == 200


def test_admin_disables_a_tool_with_reason_admin(client, admin_headers):
    tool = insert_tool(insert_server("demo"), "echo")
    response = client.put(
        f"/api/v1/tools/{tool.id}", headers=admin_headers, json={"isEnabled": False}
    )
    assert response.status_code == 200
    assert response.json["isEnabled"] is False
    assert response.json["disabledReason"] == "admin"
    stored = db_tool(tool.id)
    assert (stored.is_enabled, stored.disabled_reason) == (False, "admin")


def test_admin_enabling_a_quarantined_tool_clears_its_reason(client, admin_headers):
    tool = insert_tool(
        insert_server("demo"), "echo", is_enabled=False, disabled_reason="definition_changed"
    )
    response = client.put(
        f"/api/v1/tools/{tool.id}", headers=admin_headers, json={"isEnabled": True}
    )
    assert response.status_code == 200
    assert (response.json["isEnabled"], response.json["disabledReason"]) == (True, None)
    assert db_tool(tool.id).disabled_reason is None


def test_admin_sets_and_clears_cache_ttl_without_touching_enablement(client, admin_headers):
    tool = insert_tool(insert_server("demo"), "echo", is_enabled=False, disabled_reason="admin")
    url = f"/api/v1/tools/{tool.id}"
    response = client.put(url, headers=admin_headers, json={"cacheTtlSeconds": 0})
    assert response.status_code == 200
    assert response.json["cacheTtlSeconds"] == 0
    assert (response.json["isEnabled"], response.json["disabledReason"]) == (False, "admin")
    response = client.put(url, headers=admin_headers, json={"cacheTtlSeconds": None})
    assert response.json["cacheTtlSeconds"] is None
    assert db_tool(tool.id).cache_ttl_seconds is None


def test_admin_changes_both_fields_at_once(client, admin_headers):
    tool = insert_tool(insert_server("demo"), "echo")
    response = client.put(
        f"/api/v1/tools/{tool.id}",
        headers=admin_headers,
        json={"isEnabled": False, "cacheTtlSeconds": 600},
    )
    assert response.status_code == 200
    stored = db_tool(tool.id)
    assert (stored.is_enabled, stored.cache_ttl_seconds) == (False, 600)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"isEnabled": "false"},
        {"isEnabled": 0},
        {"isEnabled": None},
        {"cacheTtlSeconds": -1},
        {"cacheTtlSeconds": "60"},
        {"cacheTtlSeconds": 1.5},
        {"cacheTtlSeconds": 10**12},
        {"isEnabled": True, "name": "renamed"},
    ],
)
def test_bad_tool_update_is_a_validation_error_and_changes_nothing(client, admin_headers, body):
    tool = insert_tool(insert_server("demo"), "echo")
    response = client.put(f"/api/v1/tools/{tool.id}", headers=admin_headers, json=body)
    assert response.status_code == 422
    assert response.json["error"]["code"] == "validation_error"
    stored = db_tool(tool.id)
    assert (stored.is_enabled, stored.cache_ttl_seconds, stored.name) == (True, None, "echo")


def test_malformed_json_in_a_tool_update_is_invalid_json(client, admin_headers):
    tool = insert_tool(insert_server("demo"), "echo")
    response = client.put(
        f"/api/v1/tools/{tool.id}",
        headers={**admin_headers, "Content-Type": "application/json"},
        data="{not json",
    )
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("role", ["agent", "service"])
def test_only_an_admin_may_change_a_tool_and_others_get_403_before_validation(client, role):
    tool = insert_tool(insert_server("demo"), "echo")
    headers = bearer(insert_key(role)[1])
    for body in ({"isEnabled": False}, {"bogus": 1}):
        response = client.put(f"/api/v1/tools/{tool.id}", headers=headers, json=body)
        assert response.status_code == 403
        assert response.json["error"]["code"] == "forbidden"
    assert db_tool(tool.id).is_enabled is True


def test_changing_another_orgs_tool_is_404_and_changes_nothing(client, admin_headers):
    tool = insert_tool(insert_server("theirs", org_id="other"), "echo")
    response = client.put(
        f"/api/v1/tools/{tool.id}", headers=admin_headers, json={"isEnabled": False}
    )
    assert response.status_code == 404
    assert db_tool(tool.id).is_enabled is True


def test_tools_endpoints_are_in_the_openapi_document(client):
    paths = client.get("/openapi.json").json["paths"]
    assert {"get"} <= set(paths["/api/v1/tools"])
    assert {"get", "put"} <= set(paths["/api/v1/tools/{tool_id}"])
