"""API keys: minting (key shown once), listing (never the key or its hash), revoking."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from common.db import session_scope
from common.ids import hash_api_key
from common.models import ApiKey
from tests.factories import bearer, insert_key

KEYS = "/api/v1/keys"


def mint(client, headers, **body):
    return client.post(KEYS, json={"name": "ci-bot", "role": "agent", **body}, headers=headers)


def stored_key(key_id: str) -> ApiKey:
    with session_scope() as session:
        return session.get(ApiKey, key_id)


def test_minting_a_key_answers_201_with_the_key_once(client, admin_headers):
    body = {"callerId": "bot-1", "callerType": "skill", "agentType": "researcher"}
    response = mint(client, admin_headers, **body)
    assert response.status_code == 201
    data = response.json
    assert set(data) == {*body, "id", "name", "role", "prefix", "createdAt", "key"}
    assert data["key"].startswith(data["prefix"]) and len(data["prefix"]) == 12
    assert data | body == data


def test_minted_key_is_stored_as_a_hash_in_the_callers_org(client, admin_headers):
    data = mint(client, admin_headers).json
    row = stored_key(data["id"])
    assert row.key_hash == hash_api_key(data["key"])
    assert data["key"] not in (row.key_hash, row.prefix)
    assert row.org_id == "default"


def test_minting_fills_defaults_from_name_and_role(client, admin_headers):
    agent = mint(client, admin_headers, name="scout").json
    service = mint(client, admin_headers, name="backend", role="service").json
    assert (agent["callerId"], agent["callerType"], agent["agentType"]) == (
        "scout",
        "agent",
        "agent",
    )
    assert (service["callerType"], service["agentType"]) == ("user", "service")


def test_a_minted_key_authenticates_with_its_identity(client, admin_headers):
    data = mint(client, admin_headers, role="service").json
    assert client.get("/api/v1/servers", headers=bearer(data["key"])).status_code == 200
    assert client.get(KEYS, headers=bearer(data["key"])).status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        {"role": "agent"},
        {"name": "x"},
        {"name": "", "role": "agent"},
        {"name": "x", "role": "root"},
        {"name": "x", "role": "agent", "callerType": "robot"},
        {"name": "x", "role": "agent", "agentType": "*"},
        {"name": "x", "role": "agent", "agentType": "bad\n"},
        {"name": 5, "role": "agent"},
        {"name": "x", "role": "agent", "orgId": "other"},
        {"name": "x", "role": "agent", "keyHash": "abc"},
    ],
)
def test_minting_rejects_bad_bodies_with_422(client, admin_headers, body):
    response = client.post(KEYS, json=body, headers=admin_headers)
    assert response.status_code == 422
    assert response.json["error"]["code"] == "validation_error"


def test_minting_rejects_malformed_json_with_400(client, admin_headers):
    response = client.post(KEYS, data="{", content_type="application/json", headers=admin_headers)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_json"


def test_listing_keys_never_shows_the_key_or_its_hash(client, admin_headers):
    data = mint(client, admin_headers).json
    response = client.get(KEYS, headers=admin_headers)
    assert response.status_code == 200
    [item] = response.json["items"]
    assert item["id"] == data["id"] and item["revokedAt"] is None
    text = response.get_data(as_text=True)
    assert data["key"] not in text and hash_api_key(data["key"]) not in text
    assert "key" not in item and "keyHash" not in item


def test_listing_keys_is_paginated(client, admin_headers):
    ids = sorted(mint(client, admin_headers, name=f"k{i}").json["id"] for i in range(3))
    first = client.get(f"{KEYS}?limit=2", headers=admin_headers).json
    assert [k["id"] for k in first["items"]] == ids[:2]
    second = client.get(f"{KEYS}?limit=2&cursor={first['nextCursor']}", headers=admin_headers)
    assert [k["id"] for k in second.json["items"]] == ids[2:]
    assert second.json["nextCursor"] is None


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=abc", "limit=2.5"])
def test_listing_keys_rejects_bad_query_arguments(client, admin_headers, query):
    response = client.get(f"{KEYS}?{query}", headers=admin_headers)
    assert response.status_code == 422


def test_listing_keys_shows_only_the_callers_org(client, admin_headers):
    insert_key(role="admin", org_id="acme", name="acme-admin")
    mint(client, admin_headers)
    names = [k["name"] for k in client.get(KEYS, headers=admin_headers).json["items"]]
    assert names == ["ci-bot"]


def test_revoked_key_is_refused_on_its_next_request(client, admin_headers):
    data = mint(client, admin_headers).json
    assert client.get("/api/v1/servers", headers=bearer(data["key"])).status_code == 200
    assert client.delete(f"{KEYS}/{data['id']}", headers=admin_headers).status_code == 204
    response = client.get("/api/v1/servers", headers=bearer(data["key"]))
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"


def test_revoking_twice_is_204_and_keeps_the_first_revocation_time(client, admin_headers):
    key_id = mint(client, admin_headers).json["id"]
    client.delete(f"{KEYS}/{key_id}", headers=admin_headers)
    first = stored_key(key_id).revoked_at
    assert client.delete(f"{KEYS}/{key_id}", headers=admin_headers).status_code == 204
    assert stored_key(key_id).revoked_at == first is not None


def test_revoked_keys_are_listed_with_revoked_at(client, admin_headers):
    key_id = mint(client, admin_headers).json["id"]
    client.delete(f"{KEYS}/{key_id}", headers=admin_headers)
    [item] = client.get(KEYS, headers=admin_headers).json["items"]
    assert item["revokedAt"] is not None


def test_revoking_an_unknown_key_is_404(client, admin_headers):
    response = client.delete(f"{KEYS}/nope", headers=admin_headers)
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


def test_revoking_another_orgs_key_is_404_and_leaves_it_working(client, admin_headers):
    row, plaintext = insert_key(role="admin", org_id="acme")
    assert client.delete(f"{KEYS}/{row.id}", headers=admin_headers).status_code == 404
    assert client.get(KEYS, headers=bearer(plaintext)).status_code == 200


def test_an_admin_of_another_org_mints_keys_in_its_own_org(client):
    _row, plaintext = insert_key(role="admin", org_id="acme")
    key_id = mint(client, bearer(plaintext)).json["id"]
    assert stored_key(key_id).org_id == "acme"


@pytest.mark.parametrize("role", ["agent", "service"])
def test_non_admin_keys_are_forbidden_on_every_key_endpoint(client, role):
    headers = bearer(insert_key(role=role)[1])
    victim, _ = insert_key(role="agent", name="victim")
    responses = [
        client.get(KEYS, headers=headers),
        client.post(KEYS, json={"name": "x", "role": "admin"}, headers=headers),
        client.delete(f"{KEYS}/{victim.id}", headers=headers),
    ]
    assert [r.status_code for r in responses] == [403, 403, 403]
    assert {r.json["error"]["code"] for r in responses} == {"forbidden"}
    assert stored_key(victim.id).revoked_at is None


def test_non_admins_get_403_before_their_body_is_validated(client):
    headers = bearer(insert_key(role="agent")[1])
    response = client.post(KEYS, json={"bogus": True}, headers=headers)
    assert response.status_code == 403


def test_key_endpoints_need_a_bearer_key(client):
    assert client.get(KEYS).status_code == 401
    assert client.post(KEYS, json={"name": "x", "role": "admin"}).status_code == 401


def test_a_key_row_is_written_only_on_success(client, admin_headers):
    client.post(KEYS, json={"name": "x", "role": "root"}, headers=admin_headers)
    with session_scope() as session:
        assert session.scalars(select(ApiKey)).all() == []
