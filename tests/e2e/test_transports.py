"""Each transport end to end: register, connect (tools discovered), call through a real worker."""

from __future__ import annotations

import pytest

from tests.harness import echo_peer, everything_peer, stdio_echo_config

EVERYTHING_STDIO = {
    "command": "node",
    "args": ["node_modules/@modelcontextprotocol/server-everything/dist/index.js", "stdio"],
}


def _echo_text(job: dict) -> str:
    return job["result"]["content"][0]["text"]


def test_stdio_server_connects_lists_tools_and_answers_a_call(worker, gateway, slug):
    server = gateway.register(slug, "stdio", stdio_echo_config())
    assert server["status"] == "connected"
    assert server["toolsCount"] >= 5
    response = gateway.call(f"{slug}.echo", {"text": "over stdio"})
    assert response.status_code == 200, response.json
    assert response.json["status"] == "succeeded"
    assert response.json["result"]["structuredContent"] == {"result": "over stdio"}


@pytest.mark.parametrize("transport", ["http", "sse"])
def test_sdk_server_over_network_transports(worker, gateway, slug, transport):
    peer = echo_peer(transport)
    try:
        gateway.register(slug, transport, {"url": peer.url})
        response = gateway.call(f"{slug}.add", {"a": 2, "b": 40})
        assert response.status_code == 200, response.json
        assert response.json["result"]["structuredContent"] == {"result": 42}
    finally:
        peer.stop()


@pytest.mark.parametrize("transport", ["stdio", "http", "sse"])
def test_everything_server_on_each_transport(worker, gateway, slug, transport):
    peer = None if transport == "stdio" else everything_peer(transport)
    config = EVERYTHING_STDIO if peer is None else {"url": peer.url}
    try:
        server = gateway.register(slug, transport, config)
        assert server["status"] == "connected", server
        response = gateway.call(f"{slug}.echo", {"message": "hello everything"})
        assert response.status_code == 200, response.json
        assert "hello everything" in _echo_text(response.json)
    finally:
        if peer is not None:
            peer.stop()
