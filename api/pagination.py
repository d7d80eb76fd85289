"""Cursor pagination: `{items, nextCursor}` ordered by id; the cursor is the last id served."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy import Select
from sqlalchemy.orm import Session


class PageArgs(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(load_default=None, validate=validate.Length(max=64))


def paginate(
    session: Session, query: Select, id_column: Any, args: dict
) -> tuple[list, str | None]:
    """Run `query` for one page; returns (rows, nextCursor)."""
    limit = args["limit"]
    if args.get("cursor"):
        query = query.where(id_column > args["cursor"])
    rows = list(session.scalars(query.order_by(id_column).limit(limit + 1)))
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, rows[-1].id
    return rows, None
