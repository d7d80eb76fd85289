"""Test harness: a database and a Redis key prefix of the run's own, created here and dropped at
the end. Nothing is mocked: tests talk to the real Postgres and Redis (and, in e2e, real workers).
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator

import psycopg2
import pytest
from alembic import command
from alembic.config import Config
from psycopg2 import sql

RUN_ID = f"{os.getpid()}_{secrets.token_hex(3)}"
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TEST_DB = f"mcpgw_test_{RUN_ID}"
ADMIN_TOKEN = "test-admin-token-" + secrets.token_hex(16)

os.environ.update(
    DATABASE_URL=PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + TEST_DB,
    REDIS_URL=os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    REDIS_PREFIX=f"mcpgw-test-{RUN_ID}:",
    GATEWAY_ADMIN_TOKEN=ADMIN_TOKEN,
    SECRET_KEY="test-secret-key-" + secrets.token_hex(16),
    LOG_LEVEL="warning",
    STDIO_COMMAND_ALLOWLIST=f"node,python3,{sys.executable}",
    ALLOW_PRIVATE_URLS="true",
    RATE_LIMIT_PER_MINUTE="0",
)

TABLES = ("mcp_tool_usage", "mcp_tool_permissions", "mcp_tools", "mcp_servers", "api_keys")


def admin_execute(statement: str | sql.Composable) -> None:
    """Run one statement on the server's `postgres` database (create, drop, alter databases)."""
    conn = psycopg2.connect(PG_ADMIN_URL)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def _drop_database() -> None:
    admin_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{TEST_DB}' AND pid <> pg_backend_pid()"
    )
    admin_execute(f'DROP DATABASE IF EXISTS "{TEST_DB}"')


def alembic_config() -> Config:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return Config(os.path.join(root, "alembic.ini"))


@pytest.fixture(scope="session", autouse=True)
def test_database() -> Iterator[str]:
    admin_execute(f'CREATE DATABASE "{TEST_DB}"')
    command.upgrade(alembic_config(), "head")
    yield os.environ["DATABASE_URL"]
    from common.db import get_engine

    get_engine().dispose()
    _drop_database()


@pytest.fixture(scope="session", autouse=True)
def redis_prefix() -> Iterator[str]:
    from common.redis import get_redis

    prefix = os.environ["REDIS_PREFIX"]
    yield prefix
    client = get_redis()
    for name in client.scan_iter(match=prefix + "*", count=1000):
        client.delete(name)


@pytest.fixture
def clean_state(test_database, redis_prefix) -> None:
    """Empty tables and the gateway's Redis keys (not the broker's) before a test."""
    from common.db import get_engine
    from common.redis import get_redis

    with get_engine().begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {', '.join(TABLES)} CASCADE")
    client = get_redis()
    for name in client.scan_iter(match=redis_prefix + "*", count=1000):
        if not name.startswith((redis_prefix + "_kombu", redis_prefix + "worker:")):
            client.delete(name)


@pytest.fixture
def settings_env(monkeypatch):
    """Change configuration variables for one test: `settings_env(PERMISSION_DEFAULT="deny")`.
    Settings are read once per process, so they are re-read now and again after the test."""
    from common.config import get_settings

    def apply(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    yield apply
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def app():
    from api.app import create_app

    return create_app({"TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def gateway(client, admin_headers):
    """The API as an admin, with helpers to register servers and call tools."""
    from tests.harness import Gateway

    return Gateway(client, admin_headers)


@pytest.fixture
def slug() -> str:
    """A server slug of this test's own (workers may outlive a test)."""
    return "t-" + secrets.token_hex(4)


@pytest.fixture
def spawn_worker(test_database, redis_prefix):
    """Start `python -m workers` processes for one test; all are stopped at its end."""
    from tests.harness import Worker

    started: list[Worker] = []

    def start(servers: str = "*", **kwargs) -> Worker:
        worker = Worker(servers, **kwargs)
        started.append(worker)
        worker.wait_consuming("mcp.control")
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.kill()
        worker.discard_log()
