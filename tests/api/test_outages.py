"""With Redis or Postgres unreachable the API answers 503 with a stable code, not a 500.
Real outages: the settings point at loopback ports where nothing listens."""

from __future__ import annotations

import pytest

from tests.factories import bearer, insert_key
from tests.harness import free_port


@pytest.fixture
def dead_port() -> int:
    return free_port()


def test_redis_unreachable_is_503_redis_unavailable(client, admin_headers, settings_env, dead_port):
    settings_env(REDIS_URL=f"redis://127.0.0.1:{dead_port}/0")
    response = client.post(
        "/api/v1/tools/call", json={"tool": "demo.echo", "arguments": {}}, headers=admin_headers
    )
    assert response.status_code == 503
    assert response.json["error"]["code"] == "redis_unavailable"


def test_database_unreachable_is_503_database_unavailable(client, settings_env, dead_port):
    _, key = insert_key("agent")
    settings_env(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{dead_port}/nothing")
    response = client.get("/api/v1/tools", headers=bearer(key))
    assert response.status_code == 503
    assert response.json["error"]["code"] == "database_unavailable"


def test_health_says_which_dependency_is_down(client, settings_env, dead_port):
    settings_env(REDIS_URL=f"redis://127.0.0.1:{dead_port}/0")
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json["redis"] is False and response.json["db"] is True
