"""GET /api/v1/permissions/<agentType> and PUT /api/v1/permissions (admin).

The PUT is all or nothing: these tests check the database after every refused batch. They also
check the hot path: `is_allowed` (and a second, independent process cache) flips on the very
next call after a PUT.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from common.config import get_settings
from common.db import session_scope
from common.models import McpToolPermission
from common.permissions import PermissionCache, is_allowed, write_rules
from tests.factories import bearer, insert_key, insert_server, insert_tool

URL = "/api/v1/permissions"


def stored_rules() -> set[tuple[str, str, bool]]:
    with session_scope() as session:
        query = select(
            McpToolPermission.tool_id, McpToolPermission.agent_type, McpToolPermission.allowed
        )
        return {tuple(row) for row in session.execute(query)}


def put_rules(client, headers, *rules: dict):
    return client.put(URL, headers=headers, json={"rules": list(rules)})


def rule_errors(response) -> dict[str, dict]:
    assert response.status_code == 422, response.json
    assert response.json["error"]["code"] == "validation_error"
    return response.json["error"]["details"]["fields"]["rules"]


def view(client, headers, agent_type: str) -> dict[str, tuple[bool, str]]:
    response = client.get(f"{URL}/{agent_type}", headers=headers)
    assert response.status_code == 200, response.json
    assert response.json["agentType"] == agent_type
    return {i["tool"]: (i["allowed"], i["source"]) for i in response.json["items"]}


@pytest.fixture
def demo():
    """Server `demo` with tools `echo` and `search`, in the default org."""
    server = insert_server("demo")
    return {"echo": insert_tool(server, "echo"), "search": insert_tool(server, "search")}


def test_the_view_names_explicit_wildcard_and_default_sources(client, admin_headers):
    server = insert_server("demo")
    explicit, wildcard = insert_tool(server, "explicit"), insert_tool(server, "wildcard")
    insert_tool(server, "unruled")
    with session_scope() as session:
        write_rules(
            session,
            [
                (explicit.id, "researcher", False),
                (explicit.id, "*", True),
                (wildcard.id, "*", False),
                (wildcard.id, "writer", True),
            ],
        )
    default = get_settings().permission_default_allowed
    assert view(client, admin_headers, "researcher") == {
        "demo.explicit": (False, "explicit"),
        "demo.wildcard": (False, "wildcard"),
        "demo.unruled": (default, "default"),
    }


def test_the_view_items_carry_tool_id_and_qualified_name(client, admin_headers, demo):
    response = client.get(f"{URL}/researcher", headers=admin_headers)
    items = response.json["items"]
    assert [i["tool"] for i in items] == ["demo.echo", "demo.search"]
    assert items[0] == {
        "toolId": demo["echo"].id,
        "tool": "demo.echo",
        "allowed": get_settings().permission_default_allowed,
        "source": "default",
    }


@pytest.mark.parametrize("setting", ["allow", "deny"])
def test_the_view_follows_permission_default(client, admin_headers, demo, settings_env, setting):
    settings_env(PERMISSION_DEFAULT=setting)
    expected = (setting == "allow", "default")
    assert view(client, admin_headers, "researcher") == {
        "demo.echo": expected,
        "demo.search": expected,
    }


def test_the_wildcard_view_shows_what_agent_types_without_rules_get(client, admin_headers, demo):
    with session_scope() as session:
        write_rules(session, [(demo["echo"].id, "*", False), (demo["search"].id, "x", False)])
    assert view(client, admin_headers, "*") == {
        "demo.echo": (False, "wildcard"),
        "demo.search": (get_settings().permission_default_allowed, "default"),
    }


def test_the_view_leaves_out_removed_tools_and_other_orgs(client, admin_headers):
    server = insert_server("demo")
    insert_tool(server, "kept")
    insert_tool(server, "gone", removed_at=datetime.now(UTC))
    insert_tool(insert_server("theirs", org_id="other"), "echo")
    assert list(view(client, admin_headers, "researcher")) == ["demo.kept"]


@pytest.mark.parametrize("agent_type", ["bad%20type", "semi;colon", "x" * 65])
def test_the_view_of_a_malformed_agent_type_is_a_validation_error(
    client, admin_headers, agent_type
):
    response = client.get(f"{URL}/{agent_type}", headers=admin_headers)
    assert response.status_code == 422
    assert response.json["error"]["code"] == "validation_error"


@pytest.mark.parametrize("role", ["agent", "service"])
def test_only_an_admin_may_read_the_matrix(client, role):
    response = client.get(f"{URL}/researcher", headers=bearer(insert_key(role)[1]))
    assert response.status_code == 403
    assert response.json["error"]["code"] == "forbidden"


def test_put_sets_rules_by_qualified_name_and_by_id(client, admin_headers, demo):
    echo, search = demo["echo"], demo["search"]
    response = put_rules(
        client,
        admin_headers,
        {"tool": "demo.echo", "agentType": "researcher", "allowed": False},
        {"toolId": search.id, "agentType": "*", "allowed": True},
    )
    assert response.status_code == 200
    assert response.json == {
        "rules": [
            {"toolId": echo.id, "tool": "demo.echo", "agentType": "researcher", "allowed": False},
            {"toolId": search.id, "tool": "demo.search", "agentType": "*", "allowed": True},
        ]
    }
    assert stored_rules() == {(echo.id, "researcher", False), (search.id, "*", True)}


def test_put_again_updates_the_rule_in_place(client, admin_headers, demo):
    rule = {"tool": "demo.echo", "agentType": "researcher", "allowed": False}
    assert put_rules(client, admin_headers, rule).status_code == 200
    assert put_rules(client, admin_headers, {**rule, "allowed": True}).status_code == 200
    assert stored_rules() == {(demo["echo"].id, "researcher", True)}


def test_put_with_allowed_null_removes_the_rule(client, admin_headers, demo):
    echo = demo["echo"]
    put_rules(
        client,
        admin_headers,
        {"tool": "demo.echo", "agentType": "researcher", "allowed": False},
        {"tool": "demo.echo", "agentType": "*", "allowed": False},
    )
    response = put_rules(
        client,
        admin_headers,
        {"tool": "demo.echo", "agentType": "researcher", "allowed": None},
        {"tool": "demo.echo", "agentType": "never-set", "allowed": None},
    )
    assert response.status_code == 200
    assert response.json["rules"][0]["allowed"] is None
    assert stored_rules() == {(echo.id, "*", False)}
    assert view(client, admin_headers, "researcher")["demo.echo"] == (False, "wildcard")


def test_put_accepts_one_tool_for_several_agent_types(client, admin_headers, demo):
    response = put_rules(
        client,
        admin_headers,
        {"tool": "demo.echo", "agentType": "researcher", "allowed": True},
        {"tool": "demo.echo", "agentType": "writer", "allowed": False},
        {"tool": "demo.echo", "agentType": "*", "allowed": False},
    )
    assert response.status_code == 200
    assert len(stored_rules()) == 3


def test_one_unknown_tool_refuses_the_whole_batch_and_names_its_index(client, admin_headers, demo):
    echo = demo["echo"]
    put_rules(
        client, admin_headers, {"toolId": echo.id, "agentType": "researcher", "allowed": True}
    )
    before = stored_rules()
    response = put_rules(
        client,
        admin_headers,
        {"toolId": echo.id, "agentType": "researcher", "allowed": False},
        {"tool": "demo.search", "agentType": "*", "allowed": False},
        {"tool": "demo.nope", "agentType": "*", "allowed": False},
        {"toolId": "no-such-id", "agentType": "*", "allowed": False},
    )
    errors = rule_errors(response)
    assert set(errors) == {"2", "3"}
    assert "tool" in errors["2"]
    assert "toolId" in errors["3"]
    assert stored_rules() == before


def test_another_orgs_tool_is_unknown_by_id_and_by_name(client, admin_headers, demo):
    theirs = insert_tool(insert_server("theirs", org_id="other"), "echo")
    response = put_rules(
        client,
        admin_headers,
        {"tool": "demo.echo", "agentType": "*", "allowed": False},
        {"toolId": theirs.id, "agentType": "*", "allowed": False},
        {"tool": "theirs.echo", "agentType": "*", "allowed": False},
    )
    assert set(rule_errors(response)) == {"1", "2"}
    assert stored_rules() == set()


def test_the_same_tool_and_agent_type_twice_refuses_the_batch(client, admin_headers, demo):
    response = put_rules(
        client,
        admin_headers,
        {"tool": "demo.echo", "agentType": "researcher", "allowed": True},
        {"tool": "demo.search", "agentType": "researcher", "allowed": True},
        {"toolId": demo["echo"].id, "agentType": "researcher", "allowed": False},
    )
    errors = rule_errors(response)
    assert set(errors) == {"2"}
    assert "rule 0" in errors["2"]["_schema"][0]
    assert stored_rules() == set()


@pytest.mark.parametrize(
    ("bad_rule", "field"),
    [
        ({"tool": "demo.echo", "toolId": "x", "agentType": "a", "allowed": True}, "_schema"),
        ({"agentType": "a", "allowed": True}, "_schema"),
        ({"tool": "demo.echo", "agentType": "bad type", "allowed": True}, "agentType"),
        ({"tool": "demo.echo", "agentType": "a" * 65, "allowed": True}, "agentType"),
        ({"tool": "demo.echo", "agentType": "", "allowed": True}, "agentType"),
        ({"tool": "demo.echo", "agentType": "a\n", "allowed": True}, "agentType"),
        ({"tool": "demo.echo", "allowed": True}, "agentType"),
        ({"tool": "demo.echo", "agentType": "a"}, "allowed"),
        ({"tool": "demo.echo", "agentType": "a", "allowed": "yes"}, "allowed"),
        ({"tool": "demo.echo", "agentType": "a", "allowed": 1}, "allowed"),
        ({"tool": "no-dot", "agentType": "a", "allowed": True}, "tool"),
        ({"tool": "demo.echo", "agentType": "a", "allowed": True, "extra": 1}, "extra"),
    ],
)
def test_a_malformed_rule_is_named_by_index_and_nothing_is_written(
    client, admin_headers, demo, bad_rule, field
):
    good = {"tool": "demo.search", "agentType": "researcher", "allowed": False}
    errors = rule_errors(put_rules(client, admin_headers, good, bad_rule))
    assert set(errors) == {"1"}
    assert field in errors["1"]
    assert stored_rules() == set()


def test_every_malformed_rule_of_a_batch_is_reported(client, admin_headers, demo):
    response = put_rules(
        client,
        admin_headers,
        {"tool": "demo.echo", "agentType": "bad type", "allowed": True},
        {"tool": "demo.echo", "agentType": "ok", "allowed": True},
        {"agentType": "ok", "allowed": True},
    )
    assert set(rule_errors(response)) == {"0", "2"}


@pytest.mark.parametrize(
    "body",
    [{}, {"rules": []}, {"rules": "all"}, {"rules": [1]}, {"rules": [], "extra": True}],
)
def test_a_malformed_batch_is_a_validation_error(client, admin_headers, body):
    response = client.put(URL, headers=admin_headers, json=body)
    assert response.status_code == 422
    assert response.json["error"]["code"] == "validation_error"


def test_malformed_json_is_invalid_json(client, admin_headers):
    headers = {**admin_headers, "Content-Type": "application/json"}
    response = client.put(URL, headers=headers, data="{rules: nope")
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("role", ["agent", "service"])
def test_only_an_admin_may_set_rules_and_others_get_403_before_validation(client, demo, role):
    headers = bearer(insert_key(role)[1])
    good = {"tool": "demo.echo", "agentType": "researcher", "allowed": True}
    for body in ({"rules": [good]}, {"bogus": True}):
        response = client.put(URL, headers=headers, json=body)
        assert response.status_code == 403
    assert stored_rules() == set()


def test_is_allowed_flips_on_the_very_next_call_after_a_put(client, admin_headers, demo):
    echo = demo["echo"]
    default = get_settings().permission_default_allowed
    peer = PermissionCache()  # another process's cache, warmed before the change
    assert is_allowed(echo.id, "researcher") == (default, "default")
    assert peer.is_allowed(echo.id, "researcher") == (default, "default")

    rule = {"tool": "demo.echo", "agentType": "researcher", "allowed": not default}
    assert put_rules(client, admin_headers, rule).status_code == 200
    assert is_allowed(echo.id, "researcher") == (not default, "explicit")
    assert peer.is_allowed(echo.id, "researcher") == (not default, "explicit")

    assert put_rules(client, admin_headers, {**rule, "allowed": None}).status_code == 200
    assert is_allowed(echo.id, "researcher") == (default, "default")
    assert peer.is_allowed(echo.id, "researcher") == (default, "default")


def test_a_refused_batch_leaves_the_hot_path_answer_unchanged(client, admin_headers, demo):
    echo = demo["echo"]
    put_rules(client, admin_headers, {"toolId": echo.id, "agentType": "*", "allowed": False})
    assert is_allowed(echo.id, "researcher") == (False, "wildcard")
    response = put_rules(
        client,
        admin_headers,
        {"toolId": echo.id, "agentType": "*", "allowed": True},
        {"tool": "demo.nope", "agentType": "*", "allowed": True},
    )
    assert response.status_code == 422
    assert is_allowed(echo.id, "researcher") == (False, "wildcard")


def test_an_agent_keys_tool_list_follows_a_put_immediately(client, admin_headers, demo):
    agent = bearer(insert_key("agent", agent_type="researcher")[1])
    put_rules(client, admin_headers, {"tool": "demo.echo", "agentType": "*", "allowed": True})
    put_rules(client, admin_headers, {"tool": "demo.search", "agentType": "*", "allowed": True})
    before = client.get("/api/v1/tools", headers=agent).json["items"]
    assert sorted(i["tool"] for i in before) == ["demo.echo", "demo.search"]
    deny = {"tool": "demo.echo", "agentType": "researcher", "allowed": False}
    assert put_rules(client, admin_headers, deny).status_code == 200
    after = client.get("/api/v1/tools", headers=agent).json["items"]
    assert [i["tool"] for i in after] == ["demo.search"]


def test_permission_endpoints_are_in_the_openapi_document(client):
    paths = client.get("/openapi.json").json["paths"]
    assert "put" in paths["/api/v1/permissions"]
    assert "get" in paths["/api/v1/permissions/{agent_type}"]
