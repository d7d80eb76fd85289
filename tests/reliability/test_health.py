"""Beat keeps the registry honest with no admin action: health pings flip a dead server to
`error` and a reconnect brings it back; scheduled rediscovery finds tools added silently."""

from __future__ import annotations

import time

import pytest

from tests.harness import Beat, Peer, echo_peer, wait_for

PING_SECONDS = 1
FAST_BEAT = {
    "HEALTH_PING_INTERVAL_SECONDS": str(PING_SECONDS),
    "TOOL_REFRESH_INTERVAL_SECONDS": "2",
}


@pytest.fixture
def beat(tmp_path):
    process = Beat(str(tmp_path), env=FAST_BEAT)
    yield process
    process.stop()


def _server(gateway, server_id: str) -> dict:
    return gateway.client.get(f"/api/v1/servers/{server_id}", headers=gateway.headers).json


def _tool_names(gateway, server_id: str) -> set[str]:
    query = f"/api/v1/tools?serverId={server_id}&limit=200"
    return {t["name"] for t in gateway.client.get(query, headers=gateway.headers).json["items"]}


def test_a_stopped_server_turns_error_then_connected_again_when_it_returns(
    spawn_worker, gateway, slug, beat
):
    peer: Peer = echo_peer("http")
    try:
        spawn_worker(slug, env=FAST_BEAT)
        server = gateway.register(slug, "http", {"url": peer.url})
        assert server["status"] == "connected"
        peer.stop()
        stopped = time.monotonic()
        wait_for(lambda: _server(gateway, server["id"])["status"] == "error", 15, "status error")
        to_error = time.monotonic() - stopped
        assert to_error <= 2 * PING_SECONDS + 5, to_error  # two intervals plus a ping's timeout
        assert _server(gateway, server["id"])["lastError"]
        peer.start()  # same port: the worker's reconnect loop finds it again
        back = wait_for(
            lambda: (s := _server(gateway, server["id"]))["status"] == "connected" and s,
            30,
            "status connected again",
        )
        assert back["lastError"] is None
        assert gateway.call(f"{slug}.echo", {"text": "back"}, cache="bypass").json["status"] == (
            "succeeded"
        )
    finally:
        peer.stop()


def test_a_tool_added_without_notification_appears_at_the_next_rediscovery(
    spawn_worker, gateway, slug, beat
):
    peer = echo_peer("http")
    try:
        spawn_worker(slug, env=FAST_BEAT)
        server = gateway.register(slug, "http", {"url": peer.url})
        assert server["status"] == "connected", server
        grown = gateway.call(f"{slug}.grow", {"name": "quiet", "notify": False})
        assert (grown.status_code, grown.json.get("status")) == (200, "succeeded"), grown.json
        wait_for(lambda: "quiet" in _tool_names(gateway, server["id"]), 15, "rediscovery")
    finally:
        peer.stop()
