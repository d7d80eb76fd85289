"""MCP servers: registration, validation and policy, org scoping, updates, deletion, announcements.

Policy tests that need a stricter configuration than the test run's reload the settings from the
environment (`settings_env` fixture); nothing is mocked.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from common.config import get_settings
from common.crypto import decrypt_config
from common.db import session_scope
from common.heartbeats import remove_heartbeat, write_heartbeat
from common.models import McpServer, McpTool, McpToolPermission, McpToolUsage
from common.redis import get_redis, key
from common.servers import check_url
from tests.factories import bearer, insert_key, insert_server, insert_tool

SERVERS = "/api/v1/servers"


def stdio_body(slug: str = "files", **config) -> dict:
    return {
        "name": slug.title(),
        "slug": slug,
        "transport": "stdio",
        "config": {"command": "node", "args": ["server.js"], **config},
    }


def http_body(slug: str = "remote", url: str = "https://mcp.example.com/mcp", **config) -> dict:
    return {
        "name": slug.title(),
        "slug": slug,
        "transport": "http",
        "config": {"url": url, **config},
    }


def create(client, headers, body: dict):
    return client.post(SERVERS, json=body, headers=headers)


def stored(server_id: str) -> McpServer | None:
    with session_scope() as session:
        return session.get(McpServer, server_id)


def error_code(response) -> str:
    return response.json["error"]["code"]


@pytest.fixture
def control_channel() -> Iterator:
    pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(key("control"))
    yield pubsub
    pubsub.close()


def next_message(pubsub, timeout: float = 2.0) -> dict | None:
    """The next published message, skipping subscription confirmations; None after `timeout`."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        message = pubsub.get_message(timeout=left)
        if message:
            return json.loads(message["data"])
    return None


# --- registration -----------------------------------------------------------------------------


def test_registering_a_stdio_server_answers_201_with_the_server(client, admin_headers):
    response = create(client, admin_headers, stdio_body(cwd="/srv"))
    assert response.status_code == 201
    data = response.json
    assert data["slug"] == "files" and data["orgId"] == "default"
    assert data["config"] == {"command": "node", "args": ["server.js"], "env": {}, "cwd": "/srv"}
    assert (data["status"], data["desiredState"]) == ("disconnected", "connected")
    assert data["lastPingAt"] is None and data["lastError"] is None


def test_registering_an_http_server_keeps_timeout_and_headers(client, admin_headers):
    body = http_body(headers={"X-Team": "a"}, timeoutMs=5000)
    response = create(client, admin_headers, body)
    assert response.status_code == 201
    assert response.json["config"]["timeoutMs"] == 5000
    assert response.json["config"]["headers"] == {"X-Team": "***"}


def test_registering_an_sse_server_is_accepted(client, admin_headers):
    body = http_body("events", "http://mcp.example.com/sse") | {"transport": "sse"}
    assert create(client, admin_headers, body).status_code == 201


def test_a_registered_server_starts_at_config_version_1(client, admin_headers):
    server_id = create(client, admin_headers, stdio_body()).json["id"]
    assert stored(server_id).config_version == 1


def test_registering_announces_an_upsert_to_workers(client, admin_headers, control_channel):
    server_id = create(client, admin_headers, stdio_body()).json["id"]
    assert next_message(control_channel) == {"action": "upsert", "serverId": server_id}


def test_duplicate_slug_is_409_slug_taken(client, admin_headers):
    create(client, admin_headers, stdio_body())
    response = create(client, admin_headers, stdio_body())
    assert response.status_code == 409
    assert error_code(response) == "slug_taken"


def test_slugs_are_unique_across_orgs(client, admin_headers):
    insert_server("files", org_id="acme")
    assert error_code(create(client, admin_headers, stdio_body())) == "slug_taken"


def test_racing_registrations_of_one_slug_end_in_one_201_and_409s(app, admin_headers):
    racers = 8
    barrier, statuses = threading.Barrier(racers), []

    def register() -> None:
        barrier.wait(timeout=10)
        response = create(app.test_client(), admin_headers, stdio_body("racy"))
        statuses.append((response.status_code, response.json.get("error", {}).get("code")))

    threads = [threading.Thread(target=register) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(statuses, key=str) == [(201, None)] + [(409, "slug_taken")] * (racers - 1)


# --- validation -------------------------------------------------------------------------------


def test_malformed_json_is_400_invalid_json(client, admin_headers):
    response = client.post(
        SERVERS, data='{"name": ', content_type="application/json", headers=admin_headers
    )
    assert response.status_code == 400
    assert error_code(response) == "invalid_json"


def test_a_body_over_one_mebibyte_is_413(client, admin_headers):
    body = stdio_body(args=["x" * (1024 * 1024)])
    response = create(client, admin_headers, body)
    assert response.status_code == 413
    assert error_code(response) == "payload_too_large"


@pytest.mark.parametrize(
    "change",
    [
        {"owner": "me"},
        {"status": "connected"},
        {"name": 5},
        {"name": ""},
        {"transport": "websocket"},
        {"config": "node server.js"},
        {"config": ["node"]},
    ],
)
def test_bad_envelopes_are_422_validation_error(client, admin_headers, change):
    response = create(client, admin_headers, stdio_body() | change)
    assert response.status_code == 422
    assert error_code(response) == "validation_error"


@pytest.mark.parametrize("missing", ["name", "slug", "transport", "config"])
def test_missing_fields_are_422_and_named(client, admin_headers, missing):
    body = stdio_body()
    del body[missing]
    response = create(client, admin_headers, body)
    assert response.status_code == 422
    assert missing in response.json["error"]["details"]["fields"]


def test_a_json_array_body_is_422(client, admin_headers):
    assert create(client, admin_headers, [stdio_body()]).status_code == 422


@pytest.mark.parametrize(
    "slug", ["", "Files", "-files", "files_2", "files.v2", "a" * 64, "files\n", "fïles", " files"]
)
def test_bad_slugs_are_422(client, admin_headers, slug):
    response = create(client, admin_headers, stdio_body() | {"slug": slug})
    assert response.status_code == 422
    assert "slug" in response.json["error"]["details"]["fields"]


@pytest.mark.parametrize("slug", ["a", "0", "files-2", "a" * 63])
def test_good_slugs_are_accepted(client, admin_headers, slug):
    assert create(client, admin_headers, stdio_body(slug)).status_code == 201


@pytest.mark.parametrize(
    "config",
    [
        {"command": "node", "shell": True},
        {"args": []},
        {"command": 5},
        {"command": ""},
        {"command": "node", "args": "server.js"},
        {"command": "node", "args": [1]},
        {"command": "node", "env": {"TOKEN": 5}},
        {"command": "node", "env": ["TOKEN=x"]},
        {"command": "node", "cwd": 7},
        {"command": "node", "url": "https://mcp.example.com"},
    ],
)
def test_bad_stdio_configs_are_422_under_config(client, admin_headers, config):
    response = create(client, admin_headers, stdio_body() | {"config": config})
    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert "config" in response.json["error"]["details"]["fields"]


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"url": 5},
        {"url": "https://mcp.example.com", "command": "node"},
        {"url": "https://mcp.example.com", "headers": {"A": 1}},
        {"url": "https://mcp.example.com", "headers": {"A": "x\r\nInjected: 1"}},
        {"url": "https://mcp.example.com", "timeoutMs": "5000"},
        {"url": "https://mcp.example.com", "timeoutMs": 5000.5},
        {"url": "https://mcp.example.com", "timeoutMs": True},
        {"url": "https://mcp.example.com", "timeoutMs": 999},
        {"url": "https://mcp.example.com", "timeoutMs": 300_001},
    ],
)
def test_bad_http_configs_are_422_under_config(client, admin_headers, config):
    response = create(client, admin_headers, http_body() | {"config": config})
    assert response.status_code == 422
    assert "config" in response.json["error"]["details"]["fields"]


@pytest.mark.parametrize(
    "url", ["ftp://mcp.example.com", "file:///etc/passwd", "mcp.example.com", "https://", "x"]
)
def test_non_http_urls_are_422_url_not_allowed(client, admin_headers, url):
    response = create(client, admin_headers, http_body(url=url))
    assert response.status_code == 422
    assert error_code(response) == "url_not_allowed"


def test_credentials_in_the_url_are_refused(client, admin_headers):
    response = create(client, admin_headers, http_body(url="https://bob:pw@mcp.example.com"))
    assert error_code(response) == "url_not_allowed"


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8080/mcp",
        "http://LOCALHOST./mcp",
        "http://api.localhost/mcp",
        "http://127.0.0.1/mcp",
        "http://10.1.2.3/mcp",
        "http://192.168.0.10/mcp",
        "http://172.16.5.4/mcp",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0/mcp",
        "http://[::1]/mcp",
        "http://[fe80::1]/mcp",
        "http://[fd00::1]/mcp",
        "http://[::ffff:127.0.0.1]/mcp",
        "http://127.1/mcp",
        "http://2130706433/mcp",
        "http://0x7f000001/mcp",
    ],
)
def test_private_urls_are_refused_unless_allowed(client, admin_headers, settings_env, url):
    settings_env(ALLOW_PRIVATE_URLS="false")
    response = create(client, admin_headers, http_body(url=url))
    assert response.status_code == 422
    assert error_code(response) == "url_not_allowed"


@pytest.mark.parametrize(
    "url", ["https://mcp.example.com/mcp", "http://8.8.8.8/mcp", "https://[2606:4700::1]/"]
)
def test_public_urls_pass_the_private_url_policy(url):
    check_url(url, allow_private=False)


def test_private_urls_are_accepted_when_allowed(client, admin_headers):
    assert get_settings().allow_private_urls  # the test run's setting
    response = create(client, admin_headers, http_body(url="http://127.0.0.1:9000/mcp"))
    assert response.status_code == 201


@pytest.mark.parametrize("command", ["bash", "/bin/sh", "./node", "/usr/bin/node", "node "])
def test_commands_outside_the_allowlist_are_422_command_not_allowed(client, admin_headers, command):
    response = create(client, admin_headers, stdio_body() | {"config": {"command": command}})
    assert response.status_code == 422
    assert error_code(response) == "command_not_allowed"


def test_absolute_paths_are_allowed_when_listed(client, admin_headers, settings_env):
    settings_env(STDIO_COMMAND_ALLOWLIST="/usr/bin/node, python3")
    body = stdio_body() | {"config": {"command": "/usr/bin/node"}}
    assert create(client, admin_headers, body).status_code == 201
    assert error_code(create(client, admin_headers, stdio_body("b"))) == "command_not_allowed"


def test_an_empty_allowlist_refuses_every_stdio_server(client, admin_headers, settings_env):
    settings_env(STDIO_COMMAND_ALLOWLIST="")
    response = create(client, admin_headers, stdio_body())
    assert response.status_code == 422
    assert error_code(response) == "command_not_allowed"
    assert "STDIO_COMMAND_ALLOWLIST is empty" in response.json["error"]["message"]


@pytest.mark.parametrize("name", ["PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "DYLD_INSERT_LIBRARIES"])
def test_env_that_changes_the_program_is_refused(client, admin_headers, name):
    response = create(client, admin_headers, stdio_body(env={name: "/tmp/evil"}))
    assert error_code(response) == "command_not_allowed"


def test_redacted_placeholder_without_a_stored_secret_is_422(client, admin_headers):
    response = create(client, admin_headers, stdio_body(env={"TOKEN": "***"}))
    assert response.status_code == 422
    assert error_code(response) == "validation_error"


def test_rejected_registrations_store_nothing(client, admin_headers):
    create(client, admin_headers, stdio_body() | {"config": {"command": "bash"}})
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(McpServer)) == 0


# --- listing and details ----------------------------------------------------------------------


def test_any_key_lists_its_orgs_servers(client, admin_headers):
    create(client, admin_headers, stdio_body("mine"))
    insert_server("theirs", org_id="acme")
    response = client.get(SERVERS, headers=bearer(insert_key(role="agent")[1]))
    assert response.status_code == 200
    assert [s["slug"] for s in response.json["items"]] == ["mine"]
    assert response.json["nextCursor"] is None


def test_listing_servers_is_paginated(client, admin_headers):
    ids = sorted(create(client, admin_headers, stdio_body(f"s{i}")).json["id"] for i in range(3))
    first = client.get(f"{SERVERS}?limit=2", headers=admin_headers).json
    second = client.get(f"{SERVERS}?limit=2&cursor={first['nextCursor']}", headers=admin_headers)
    assert [s["id"] for s in first["items"] + second.json["items"]] == ids
    assert second.json["nextCursor"] is None


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=ten"])
def test_listing_servers_rejects_bad_limits(client, admin_headers, query):
    response = client.get(f"{SERVERS}?{query}", headers=admin_headers)
    assert response.status_code == 422
    assert error_code(response) == "validation_error"


def test_server_details_count_tools_not_removed(client, admin_headers):
    server = insert_server("files", org_id="default")
    insert_tool(server, "read")
    insert_tool(server, "gone", removed_at=datetime.now(UTC))
    response = client.get(f"{SERVERS}/{server.id}", headers=admin_headers)
    assert response.status_code == 200
    assert response.json["toolsCount"] == 1
    assert response.json["sessions"] == []


@pytest.fixture
def heartbeats() -> Iterator:
    names: list[str] = []

    def beat(nodename: str, sessions: dict) -> None:
        names.append(nodename)
        write_heartbeat(nodename, {"nodename": nodename, "queues": [], "sessions": sessions})

    yield beat
    for name in names:
        remove_heartbeat(name)


def test_server_details_list_sessions_from_live_workers(client, admin_headers, heartbeats):
    server = insert_server("files")
    heartbeats("w1@test-host", {"files": {"state": "ready", "configVersion": 1}})
    heartbeats("w2@test-host", {"other": {"state": "ready"}})
    sessions = client.get(f"{SERVERS}/{server.id}", headers=admin_headers).json["sessions"]
    mine = [s for s in sessions if s["worker"].endswith("@test-host")]
    assert mine == [{"worker": "w1@test-host", "state": "ready", "configVersion": 1}]


def test_another_orgs_server_is_404_for_get_put_and_delete(client, admin_headers):
    server = insert_server("theirs", org_id="acme")
    url = f"{SERVERS}/{server.id}"
    responses = [
        client.get(url, headers=admin_headers),
        client.put(url, json={"name": "Mine now"}, headers=admin_headers),
        client.delete(url, headers=admin_headers),
    ]
    assert [r.status_code for r in responses] == [404, 404, 404]
    assert {error_code(r) for r in responses} == {"not_found"}
    assert stored(server.id).name == "Theirs"


def test_an_unknown_server_id_is_404(client, admin_headers):
    assert client.get(f"{SERVERS}/nope", headers=admin_headers).status_code == 404


# --- roles ------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["agent", "service"])
def test_non_admin_keys_are_forbidden_on_admin_server_endpoints(client, role):
    headers = bearer(insert_key(role=role)[1])
    url = f"{SERVERS}/{insert_server('files').id}"
    responses = [
        create(client, headers, stdio_body("new")),
        client.get(url, headers=headers),
        client.put(url, json={"name": "x"}, headers=headers),
        client.delete(url, headers=headers),
    ]
    assert [r.status_code for r in responses] == [403] * 4
    assert {error_code(r) for r in responses} == {"forbidden"}


def test_non_admins_get_403_before_their_body_is_validated(client):
    headers = bearer(insert_key(role="service")[1])
    assert create(client, headers, {"junk": 1}).status_code == 403


def test_a_revoked_key_is_401_on_server_endpoints(client, admin_headers):
    row, plaintext = insert_key(role="admin")
    client.delete(f"/api/v1/keys/{row.id}", headers=admin_headers)
    assert client.get(SERVERS, headers=bearer(plaintext)).status_code == 401
    assert create(client, bearer(plaintext), stdio_body()).status_code == 401


# --- updates ----------------------------------------------------------------------------------


def put(client, headers, server_id: str, body: dict):
    return client.put(f"{SERVERS}/{server_id}", json=body, headers=headers)


def test_renaming_a_server_keeps_its_config_version(client, admin_headers):
    server_id = create(client, admin_headers, stdio_body()).json["id"]
    response = put(client, admin_headers, server_id, {"name": "Renamed"})
    assert response.status_code == 200 and response.json["name"] == "Renamed"
    assert stored(server_id).config_version == 1


def test_changing_the_config_bumps_the_config_version(client, admin_headers):
    server_id = create(client, admin_headers, stdio_body()).json["id"]
    body = {"config": {"command": "python3", "args": ["-m", "srv"]}}
    response = put(client, admin_headers, server_id, body)
    assert response.json["config"]["command"] == "python3"
    assert stored(server_id).config_version == 2


def test_sending_the_same_config_back_does_not_bump_the_version(client, admin_headers):
    server_id = create(client, admin_headers, stdio_body(env={"TOKEN": "t"})).json["id"]
    config = {"command": "node", "args": ["server.js"], "env": {"TOKEN": "***"}}
    assert put(client, admin_headers, server_id, {"config": config}).status_code == 200
    assert stored(server_id).config_version == 1


def test_changing_the_transport_needs_a_config(client, admin_headers):
    server_id = create(client, admin_headers, stdio_body()).json["id"]
    response = put(client, admin_headers, server_id, {"transport": "http"})
    assert response.status_code == 422
    assert "config" in response.json["error"]["details"]["fields"]


def test_changing_the_transport_with_a_config_bumps_the_version(client, admin_headers):
    server_id = create(client, admin_headers, stdio_body()).json["id"]
    body = {"transport": "http", "config": {"url": "https://mcp.example.com/mcp"}}
    response = put(client, admin_headers, server_id, body)
    assert response.status_code == 200 and response.json["transport"] == "http"
    assert stored(server_id).config_version == 2


def test_a_config_is_validated_against_the_stored_transport(client, admin_headers):
    server_id = create(client, admin_headers, http_body()).json["id"]
    response = put(client, admin_headers, server_id, {"config": {"command": "node"}})
    assert response.status_code == 422


def test_a_different_slug_is_422_slug_immutable(client, admin_headers):
    server_id = create(client, admin_headers, stdio_body()).json["id"]
    response = put(client, admin_headers, server_id, {"slug": "renamed"})
    assert response.status_code == 422
    assert error_code(response) == "slug_immutable"
    assert stored(server_id).slug == "files"


def test_sending_the_stored_slug_back_is_fine(client, admin_headers):
    server_id = create(client, admin_headers, stdio_body()).json["id"]
    assert put(client, admin_headers, server_id, {"slug": "files"}).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"status": "connected"},
        {"name": 3},
        {"transport": "ftp"},
        {"config": {"command": "bash"}},
        {"config": {"command": "node", "extra": 1}},
    ],
)
def test_bad_updates_are_422_and_change_nothing(client, admin_headers, body):
    server_id = create(client, admin_headers, stdio_body()).json["id"]
    assert put(client, admin_headers, server_id, body).status_code == 422
    assert stored(server_id).config["command"] == "node"
    assert stored(server_id).config_version == 1


def test_updates_reject_malformed_json(client, admin_headers):
    server_id = create(client, admin_headers, stdio_body()).json["id"]
    response = client.put(
        f"{SERVERS}/{server_id}",
        data="nope",
        content_type="application/json",
        headers=admin_headers,
    )
    assert error_code(response) == "invalid_json"


def test_updates_apply_the_url_policy(client, admin_headers, settings_env):
    server_id = create(client, admin_headers, http_body()).json["id"]
    settings_env(ALLOW_PRIVATE_URLS="false")
    body = {"config": {"url": "http://169.254.169.254/"}}
    assert error_code(put(client, admin_headers, server_id, body)) == "url_not_allowed"


def test_updating_announces_an_upsert(client, admin_headers, control_channel):
    server_id = create(client, admin_headers, stdio_body()).json["id"]
    next_message(control_channel)
    put(client, admin_headers, server_id, {"name": "New"})
    assert next_message(control_channel) == {"action": "upsert", "serverId": server_id}


# --- deletion ---------------------------------------------------------------------------------


def insert_usage(server: McpServer, tool: McpTool) -> str:
    with session_scope() as session:
        usage = McpToolUsage(
            org_id=server.org_id,
            tool_id=tool.id,
            server_id=server.id,
            tool_name=tool.name,
            server_slug=server.slug,
            caller_id="bot",
            caller_type="agent",
            agent_type="x",
            status="success",
        )
        session.add(usage)
    return usage.id


def test_deleting_a_server_cascades_to_tools_and_permissions(client, admin_headers):
    server = insert_server("files")
    tool = insert_tool(server)
    with session_scope() as session:
        session.add(McpToolPermission(tool_id=tool.id, agent_type="*", allowed=True))
    assert client.delete(f"{SERVERS}/{server.id}", headers=admin_headers).status_code == 204
    with session_scope() as session:
        assert session.get(McpServer, server.id) is None
        assert session.scalar(select(func.count()).select_from(McpTool)) == 0
        assert session.scalar(select(func.count()).select_from(McpToolPermission)) == 0


def test_deleting_a_server_keeps_its_usage_rows_untouched(client, admin_headers):
    server = insert_server("files")
    tool = insert_tool(server)
    usage_id = insert_usage(server, tool)
    client.delete(f"{SERVERS}/{server.id}", headers=admin_headers)
    with session_scope() as session:
        usage = session.get(McpToolUsage, usage_id)
        assert (usage.server_id, usage.tool_id, usage.server_slug) == (server.id, tool.id, "files")


def test_deleting_announces_a_delete(client, admin_headers, control_channel):
    server = insert_server("files")
    client.delete(f"{SERVERS}/{server.id}", headers=admin_headers)
    assert next_message(control_channel) == {"action": "delete", "serverId": server.id}


def test_a_deleted_servers_slug_can_be_registered_again(client, admin_headers):
    server_id = create(client, admin_headers, stdio_body()).json["id"]
    client.delete(f"{SERVERS}/{server_id}", headers=admin_headers)
    assert create(client, admin_headers, stdio_body()).status_code == 201


def test_deleting_twice_is_404_the_second_time(client, admin_headers):
    server = insert_server("files")
    client.delete(f"{SERVERS}/{server.id}", headers=admin_headers)
    assert client.delete(f"{SERVERS}/{server.id}", headers=admin_headers).status_code == 404


# --- documentation ----------------------------------------------------------------------------


def test_every_server_and_key_endpoint_is_in_the_openapi_document(client):
    paths = client.get("/openapi.json").json["paths"]
    assert set(paths[SERVERS]) >= {"get", "post"}
    assert set(paths[SERVERS + "/{server_id}"]) >= {"get", "put", "delete"}
    assert set(paths["/api/v1/keys"]) >= {"get", "post"}
    assert "delete" in paths["/api/v1/keys/{key_id}"]


def test_stored_configs_decrypt_to_what_was_sent(client, admin_headers):
    server_id = create(client, admin_headers, stdio_body(env={"TOKEN": "t0k"})).json["id"]
    assert decrypt_config(stored(server_id).config)["env"] == {"TOKEN": "t0k"}
