"""`GET /metrics`: Prometheus text for a scraper (no API key; METRICS_TOKEN, when set, as a
Bearer token), and the request hooks that count every API request by its URL rule."""

from __future__ import annotations

import hmac
import time

from flask import Flask, Response, g, request
from flask.views import MethodView
from flask_smorest import Blueprint
from prometheus_client import CONTENT_TYPE_LATEST

from api.schemas.common import GatewayErrorSchema
from common.config import get_settings
from common.errors import Unauthorized
from common.metrics import observe_request, render

blp = Blueprint("metrics", __name__, description="Prometheus metrics")

TEXT = {"text/plain": {"schema": {"type": "string"}}}


def _check_token() -> None:
    expected = get_settings().metrics_token
    if not expected:
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), expected):
        raise Unauthorized("/metrics needs Authorization: Bearer <METRICS_TOKEN>.")


@blp.route("/metrics")
class Metrics(MethodView):
    @blp.doc(
        security=[{}, {"bearerAuth": []}],
        description="Open unless METRICS_TOKEN is set; then `Authorization: Bearer <token>`.",
        responses={"200": {"description": "Prometheus text exposition format", "content": TEXT}},
    )
    @blp.alt_response(401, schema=GatewayErrorSchema, description="METRICS_TOKEN set, not given")
    def get(self):
        _check_token()
        return Response(render(), content_type=CONTENT_TYPE_LATEST)


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _count(response: Response) -> Response:
    started = g.pop("metrics_started", None)
    if started is not None:
        # The URL rule, never the raw path: ids in paths would make a series per id.
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        elapsed = time.perf_counter() - started
        observe_request(route, request.method, response.status_code, elapsed)
    return response


def instrument(app: Flask) -> None:
    """Count and time every request; call before other hooks so a refused request is timed."""
    app.before_request(_start_timer)
    app.after_request(_count)
