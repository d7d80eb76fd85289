"""End-to-end fixtures: one `*` worker per module, servers registered per test (unique slugs)."""

from __future__ import annotations

import secrets

import pytest

from tests.harness import Gateway, Worker


@pytest.fixture(scope="module")
def worker(test_database, redis_prefix):
    proc = Worker("*")
    proc.wait_consuming("mcp.control")
    yield proc
    proc.terminate()


@pytest.fixture
def gateway(client, admin_headers) -> Gateway:
    return Gateway(client, admin_headers)


@pytest.fixture
def slug() -> str:
    return "t-" + secrets.token_hex(4)
