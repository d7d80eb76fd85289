"""Per-request resources: one database session per request, closed at teardown."""

from __future__ import annotations

from flask import Flask, g
from sqlalchemy.orm import Session

from common.db import new_session


def db() -> Session:
    session = g.get("db_session")
    if session is None:
        session = g.db_session = new_session()
    return session


def _close_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def init_context(app: Flask) -> None:
    app.teardown_appcontext(_close_session)
