"""With no worker consuming a server's queue, the API refuses at once (503 `no_worker`).
Its own module: the other e2e modules keep a `*` worker running, which would serve any queue."""

from __future__ import annotations

from common.queues import server_queue
from common.redis import get_redis, key
from tests.harness import stdio_echo_config


def test_connect_with_no_worker_for_the_queue_is_503(spawn_worker, gateway, slug):
    spawn_worker("some-other-server")
    server = gateway.register(slug, "stdio", stdio_echo_config(), connect=False)
    response = gateway.client.post(
        f"/api/v1/servers/{server['id']}/connect", headers=gateway.headers
    )
    assert response.status_code == 503
    assert response.json["error"]["code"] == "no_worker"


def test_a_call_with_no_worker_is_503_and_nothing_is_enqueued(spawn_worker, gateway, slug):
    only_worker = spawn_worker(slug)
    gateway.register(slug, "stdio", stdio_echo_config())
    assert only_worker.terminate() == 0  # a graceful stop takes its heartbeat with it
    response = gateway.call(f"{slug}.echo", {"text": "anyone?"})
    assert response.status_code == 503
    assert response.json["error"]["code"] == "no_worker"
    assert get_redis().llen(key(server_queue(slug))) == 0
