"""Server lifecycle through real workers: `*` pickup, config recycling, disconnect/connect,
no worker, unreachable servers."""

from __future__ import annotations

from common.queues import server_queue
from tests.harness import free_port, stdio_echo_config, wait_for


def _pid(gateway, slug: str) -> int:
    job = gateway.call(f"{slug}.pid", cache="bypass").json
    assert job["status"] == "succeeded", job
    return job["result"]["structuredContent"]["result"]


def test_star_worker_consumes_a_new_server_queue_and_stops_when_it_is_deleted(
    worker, gateway, slug
):
    server = gateway.register(slug, "stdio", stdio_echo_config(), connect=False)
    worker.wait_consuming(server_queue(slug), timeout=10)
    response = gateway.client.delete(f"/api/v1/servers/{server['id']}", headers=gateway.headers)
    assert response.status_code == 204
    wait_for(
        lambda: server_queue(slug) not in worker.heartbeat["queues"], 10, "queue to be dropped"
    )


def test_a_config_change_recycles_the_session(worker, gateway, slug):
    server = gateway.register(slug, "stdio", stdio_echo_config())
    before = _pid(gateway, slug)
    body = {"config": stdio_echo_config({"MARK": "v2"})}
    response = gateway.client.put(
        f"/api/v1/servers/{server['id']}", json=body, headers=gateway.headers
    )
    assert response.status_code == 200
    wait_for(lambda: _pid(gateway, slug) != before, 15, "a new session")


def test_disconnect_closes_sessions_and_connect_reopens_them(worker, gateway, slug):
    server = gateway.register(slug, "stdio", stdio_echo_config())
    url = f"/api/v1/servers/{server['id']}"
    response = gateway.client.post(f"{url}/disconnect", headers=gateway.headers)
    assert response.status_code == 200
    assert response.json["status"] == "disconnected"
    assert response.json["sessions"] == []
    refused = gateway.call(f"{slug}.echo", {"text": "x"})
    assert refused.status_code == 409
    assert refused.json["error"]["code"] == "server_disconnected"
    again = gateway.connect(server["id"])
    assert again["status"] == "connected"
    assert gateway.call(f"{slug}.echo", {"text": "x"}).json["status"] == "succeeded"


def test_unreachable_server_connects_to_status_error_with_the_reason(worker, gateway, slug):
    dead_url = f"http://127.0.0.1:{free_port()}/mcp"
    server = gateway.register(slug, "http", {"url": dead_url})
    assert server["status"] == "error"
    assert server["lastError"]


def test_refresh_rediscovers_tools_now(worker, gateway, slug):
    server = gateway.register(slug, "stdio", stdio_echo_config())
    url = f"/api/v1/servers/{server['id']}/refresh"
    response = gateway.client.post(url, headers=gateway.headers)
    assert response.status_code == 200
    assert response.json["refresh"]["state"] == "ready"
    assert response.json["refresh"]["changes"]["unchanged"] == response.json["toolsCount"]


def test_a_server_stored_under_a_looser_policy_is_refused_by_the_worker(worker, gateway, slug):
    from common.crypto import encrypt_config
    from tests.factories import insert_server

    config = encrypt_config({"command": "/bin/sh", "args": [], "env": {}})
    server = insert_server(slug, config=config, status="disconnected")
    worker.wait_consuming(server_queue(slug))  # found by its reconcile: no API announced it
    answered = gateway.connect(server.id)
    assert answered["status"] == "error"
    assert "STDIO_COMMAND_ALLOWLIST" in answered["lastError"]


def test_tools_list_changed_from_the_server_triggers_rediscovery_at_once(worker, gateway, slug):
    server = gateway.register(slug, "stdio", stdio_echo_config())
    assert gateway.call(f"{slug}.grow", {"name": "fresh"}).json["status"] == "succeeded"

    def listed() -> bool:
        query = f"/api/v1/tools?serverId={server['id']}&limit=200"
        items = gateway.client.get(query, headers=gateway.headers).json["items"]
        return "fresh" in {tool["name"] for tool in items}

    wait_for(listed, 5, "the new tool to be discovered")
    job = gateway.call(f"{slug}.fresh", {"text": "new"}).json
    assert job["status"] == "succeeded", job
