"""The migrations against a real, empty Postgres database of their own: `upgrade head` builds
exactly what common.models declares, and `downgrade base` takes it all away again.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from psycopg2 import sql
from sqlalchemy import Engine, create_engine, inspect, text

from common.db import sqlalchemy_url
from common.models import Base
from tests.conftest import PG_ADMIN_URL, admin_execute, alembic_config


@pytest.fixture
def scratch_url() -> Iterator[str]:
    name = f"mcpgw_migrations_{secrets.token_hex(4)}"
    admin_execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        admin_execute(
            sql.SQL(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = {} AND pid <> pg_backend_pid()"
            ).format(sql.Literal(name))
        )
        admin_execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def cfg(scratch_url) -> Config:
    cfg = alembic_config()
    cfg.set_main_option("sqlalchemy.url", scratch_url.replace("%", "%%"))
    return cfg


@pytest.fixture
def engine(scratch_url) -> Iterator[Engine]:
    engine = create_engine(sqlalchemy_url(scratch_url))
    yield engine
    engine.dispose()


def _enum_types(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(text("SELECT typname FROM pg_type WHERE typtype = 'e'")))


def test_upgrade_head_matches_the_models(cfg, engine):
    command.upgrade(cfg, "head")

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)

    assert differences == []


def test_downgrade_base_leaves_only_alembic_version(cfg, engine):
    command.upgrade(cfg, "head")

    command.downgrade(cfg, "base")

    assert inspect(engine).get_table_names() == ["alembic_version"]
    assert _enum_types(engine) == []


def test_a_downgraded_database_upgrades_again(cfg, engine):
    command.upgrade(cfg, "head")
    command.downgrade(cfg, "base")

    command.upgrade(cfg, "head")

    assert set(inspect(engine).get_table_names()) == {
        "alembic_version",
        *Base.metadata.tables,
    }
