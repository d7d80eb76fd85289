"""RATE_LIMIT_PER_MINUTE: a per-key budget shared by every API process (counted in Redis)."""

from __future__ import annotations

import pytest

from tests.factories import bearer, insert_key


@pytest.fixture
def limit_of_three(settings_env):
    settings_env(RATE_LIMIT_PER_MINUTE="3")


def test_a_key_over_its_budget_gets_429_with_retry_after(client, limit_of_three):
    _, key = insert_key("agent")
    statuses = [client.get("/api/v1/tools", headers=bearer(key)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = client.get("/api/v1/tools", headers=bearer(key))
    assert refused.json["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 61


def test_budgets_are_per_key(client, limit_of_three):
    _, first = insert_key("agent")
    _, second = insert_key("agent")
    for _ in range(3):
        client.get("/api/v1/tools", headers=bearer(first))
    assert client.get("/api/v1/tools", headers=bearer(second)).status_code == 200


def test_a_revoked_key_is_refused_on_its_next_request_even_when_cached(client, admin_headers):
    row, key = insert_key("agent")
    assert client.get("/api/v1/tools", headers=bearer(key)).status_code == 200  # now cached
    assert client.delete(f"/api/v1/keys/{row.id}", headers=admin_headers).status_code == 204
    assert client.get("/api/v1/tools", headers=bearer(key)).status_code == 401
