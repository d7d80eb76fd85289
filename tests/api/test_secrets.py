"""Server secrets (stdio `env` values, http/sse `headers` values) never leave the gateway.

Every endpoint built here is called with distinctive secret values, and no response body may
contain them; the stored rows hold only ciphertext that decrypts back to the secrets.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from common.crypto import decrypt_config
from common.db import get_engine, session_scope
from common.models import McpServer
from tests.factories import bearer, insert_key

SERVERS = "/api/v1/servers"
ENV_SECRET = "env-sekrit-7f3a9c"
HEADER_SECRET = "Bearer hdr-sekrit-41bd02"
NEW_SECRET = "rotated-sekrit-99e1"
SECRETS = (ENV_SECRET, HEADER_SECRET, NEW_SECRET, "sekrit")


def stdio_body() -> dict:
    config = {"command": "node", "env": {"API_TOKEN": ENV_SECRET, "MODE": "prod"}}
    return {"name": "Files", "slug": "files", "transport": "stdio", "config": config}


def http_body() -> dict:
    config = {"url": "https://mcp.example.com/mcp", "headers": {"Authorization": HEADER_SECRET}}
    return {"name": "Remote", "slug": "remote", "transport": "http", "config": config}


def assert_no_secret(response) -> None:
    body = response.get_data(as_text=True)
    leaked = [secret for secret in SECRETS if secret in body]
    assert not leaked, f"{response.request.method} {response.request.path} leaked {leaked}"


@pytest.fixture
def servers(client, admin_headers) -> dict[str, str]:
    created = [
        client.post(SERVERS, json=b(), headers=admin_headers) for b in (stdio_body, http_body)
    ]
    for response in created:
        assert response.status_code == 201
        assert_no_secret(response)
    return {r.json["slug"]: r.json["id"] for r in created}


def raw_configs() -> list[str]:
    with get_engine().connect() as conn:
        return list(conn.scalars(text("SELECT config::text FROM mcp_servers")))


def stored_config(server_id: str) -> dict:
    with session_scope() as session:
        return decrypt_config(session.get(McpServer, server_id).config)


def test_registration_responses_show_secrets_as_stars(client, admin_headers):
    stdio = client.post(SERVERS, json=stdio_body(), headers=admin_headers).json
    remote = client.post(SERVERS, json=http_body(), headers=admin_headers).json
    assert stdio["config"]["env"] == {"API_TOKEN": "***", "MODE": "***"}
    assert remote["config"]["headers"] == {"Authorization": "***"}


def test_no_get_endpoint_returns_a_secret(client, admin_headers, servers):
    agent = bearer(insert_key(role="agent")[1])
    responses = [
        client.get(SERVERS, headers=admin_headers),
        client.get(SERVERS, headers=agent),
        *(client.get(f"{SERVERS}/{sid}", headers=admin_headers) for sid in servers.values()),
        client.get("/api/v1/keys", headers=admin_headers),
    ]
    for response in responses:
        assert response.status_code == 200
        assert_no_secret(response)


def test_put_responses_never_return_old_or_new_secrets(client, admin_headers, servers):
    stdio, remote = f"{SERVERS}/{servers['files']}", f"{SERVERS}/{servers['remote']}"
    keep = {"config": {"command": "node", "env": {"API_TOKEN": "***", "MODE": "***"}}}
    rotate = {"config": {"url": "https://mcp.example.com/v2", "headers": {"X-Key": NEW_SECRET}}}
    for url, body in ((stdio, {"name": "Files 2"}), (stdio, keep), (remote, rotate)):
        response = client.put(url, json=body, headers=admin_headers)
        assert response.status_code == 200
        assert_no_secret(response)


def test_post_key_endpoint_never_returns_server_secrets(client, admin_headers, servers):
    response = client.post(
        "/api/v1/keys", json={"name": "bot", "role": "agent"}, headers=admin_headers
    )
    assert response.status_code == 201
    assert_no_secret(response)


def test_error_responses_do_not_echo_secrets(client, admin_headers, servers):
    bad_header = http_body() | {"slug": "other"}
    bad_header["config"]["headers"]["Authorization"] += "\r\nX: sekrit"
    forbidden_env = stdio_body() | {"slug": "other"}
    forbidden_env["config"]["env"]["LD_PRELOAD"] = "/tmp/sekrit.so"
    responses = [
        client.post(SERVERS, json=stdio_body(), headers=admin_headers),
        client.post(SERVERS, json=bad_header, headers=admin_headers),
        client.post(SERVERS, json=forbidden_env, headers=admin_headers),
        client.put(
            f"{SERVERS}/{servers['files']}",
            json=stdio_body() | {"slug": "x"},
            headers=admin_headers,
        ),
    ]
    assert [r.status_code for r in responses] == [409, 422, 422, 422]
    for response in responses:
        assert_no_secret(response)


def test_database_rows_hold_no_plaintext_secrets(servers):
    for config in raw_configs():
        assert not [secret for secret in SECRETS if secret in config]
        assert "enc:" in config


def test_stored_secrets_decrypt_back_to_what_was_sent(servers):
    assert stored_config(servers["files"])["env"] == {"API_TOKEN": ENV_SECRET, "MODE": "prod"}
    assert stored_config(servers["remote"])["headers"] == {"Authorization": HEADER_SECRET}


def test_stars_sent_back_keep_the_stored_secret(client, admin_headers, servers):
    body = {"config": {"command": "node", "env": {"API_TOKEN": "***", "MODE": "dev"}}}
    client.put(f"{SERVERS}/{servers['files']}", json=body, headers=admin_headers)
    assert stored_config(servers["files"])["env"] == {"API_TOKEN": ENV_SECRET, "MODE": "dev"}


def test_a_rotated_secret_is_stored_encrypted(client, admin_headers, servers):
    body = {"config": {"url": "https://mcp.example.com/mcp", "headers": {"X-Key": NEW_SECRET}}}
    client.put(f"{SERVERS}/{servers['remote']}", json=body, headers=admin_headers)
    assert stored_config(servers["remote"])["headers"] == {"X-Key": NEW_SECRET}
    assert not any(NEW_SECRET in config for config in raw_configs())


def test_a_secret_dropped_from_the_config_is_gone(client, admin_headers, servers):
    body = {"config": {"command": "node", "env": {"MODE": "***"}}}
    client.put(f"{SERVERS}/{servers['files']}", json=body, headers=admin_headers)
    assert stored_config(servers["files"])["env"] == {"MODE": "prod"}
