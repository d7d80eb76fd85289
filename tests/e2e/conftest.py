"""End-to-end fixtures: one `*` worker per module; servers are registered per test under the
test's own slug (`slug` and `gateway` come from tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.harness import Worker


@pytest.fixture(scope="module")
def worker(test_database, redis_prefix):
    proc = Worker("*")
    proc.wait_consuming("mcp.control")
    yield proc
    proc.terminate()
    proc.discard_log()
