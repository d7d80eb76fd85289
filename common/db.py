"""SQLAlchemy 2 engine and sessions, created lazily (never at import) once per process."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from common.config import get_settings


def sqlalchemy_url(url: str) -> str:
    """Pin the psycopg2 driver (SQLAlchemy 2.1 would pick psycopg 3 for `postgresql://`)."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg2://" + url[len(scheme) :]
    return url


@cache
def _engine_for_pid(pid: int, url: str) -> Engine:
    # Keyed by pid: a forked child never reuses its parent's pooled sockets.
    return create_engine(
        sqlalchemy_url(url),
        pool_size=10,
        max_overflow=30,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5, "application_name": "mcp-gateway"},
    )


def get_engine() -> Engine:
    return _engine_for_pid(os.getpid(), get_settings().database_url)


@cache
def _sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def new_session() -> Session:
    return _sessionmaker(get_engine())()


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = new_session()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def ping_db() -> bool:
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - health check reports, never raises
        return False
