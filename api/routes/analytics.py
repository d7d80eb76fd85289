"""Usage analytics (admin): `GET /api/v1/analytics/usage`, the caller's org only.

The aggregate runs in Postgres (common.analytics) under a statement timeout, so a window too
wide for the data cannot hold a request thread: it answers 503 `query_timeout` instead.
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from api.auth import current_caller, require_admin
from api.context import db
from api.schemas.analytics import UsageArgs, UsageReportSchema
from api.schemas.common import GatewayErrorSchema as ErrorSchema
from common.analytics import UsageQuery, usage_groups
from common.errors import Unavailable

blp = Blueprint(
    "analytics", __name__, url_prefix="/api/v1/analytics", description="Usage analytics (admin)"
)

STATEMENT_TIMEOUT_MS = 15_000
QUERY_CANCELED = "57014"


@blp.before_request
def _admin_only() -> None:
    require_admin()


@blp.route("/usage")
class Usage(MethodView):
    @blp.arguments(UsageArgs, location="query", unknown=RAISE)
    @blp.response(200, UsageReportSchema)
    @blp.alt_response(403, schema=ErrorSchema, description="Not an admin key")
    @blp.alt_response(422, schema=ErrorSchema, description="Bad groupBy, dates or filter")
    @blp.alt_response(503, schema=ErrorSchema, description="The query ran too long")
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Calls per tool, server, caller, status, hour or day: counts, cache hit rate, latency."""
        query = UsageQuery(org_id=current_caller().org_id, **args)
        session = db()
        try:
            session.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
            groups = usage_groups(session, query)
        except OperationalError as exc:
            if getattr(exc.orig, "pgcode", None) != QUERY_CANCELED:
                raise
            raise Unavailable(
                "The usage query ran too long; narrow the window or add filters.",
                code="query_timeout",
            ) from None
        finally:
            session.rollback()  # ends the read-only transaction (and the SET LOCAL)
        window = {"start": query.start, "end": query.end}
        return {"group_by": query.group_by, **window, "groups": groups}
