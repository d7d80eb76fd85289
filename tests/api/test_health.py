def test_health_reports_db_redis_and_workers(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "db": True, "redis": True, "workers": 0}
    assert response.headers["X-Request-Id"]


def test_request_id_is_echoed_when_sane(client):
    response = client.get("/health", headers={"X-Request-Id": "abc-123"})
    assert response.headers["X-Request-Id"] == "abc-123"


def test_unknown_route_uses_the_error_shape(client):
    response = client.get("/no/such/route")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


def test_api_requires_a_bearer_key(client):
    response = client.get("/api/v1/servers")
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"


def test_wrong_method_is_405_in_the_error_shape(client):
    response = client.delete("/health")
    assert response.status_code == 405
    assert response.json["error"]["code"] == "method_not_allowed"


def test_openapi_document_is_served(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert "/health" in response.json["paths"]
