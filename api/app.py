"""Application factory: config, OpenAPI (flask-smorest), auth, request ids, one error shape."""

from __future__ import annotations

import re
import sys
from typing import Any

import structlog
from flask import Flask, g, request
from flask_smorest import Api

from api import ratelimit
from api.auth import current_caller
from api.context import init_context
from api.errors import register_error_handlers
from api.routes import BLUEPRINTS
from api.routes.metrics import instrument
from common.config import ConfigError, get_settings
from common.ids import new_id
from common.logs import configure_logging

MAX_BODY_BYTES = 1024 * 1024
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _openapi_config() -> dict[str, Any]:
    return {
        "API_TITLE": "MCP Gateway",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "docs",
        "OPENAPI_SWAGGER_UI_URL": "https://cdn.jsdelivr.net/npm/swagger-ui-dist/",
        "API_SPEC_OPTIONS": {
            "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearerAuth": []}],
        },
    }


def _begin_request() -> None:
    incoming = request.headers.get("X-Request-Id", "")
    g.request_id = incoming if _REQUEST_ID.match(incoming) else new_id()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=g.request_id)
    if request.path.startswith("/api/"):
        ratelimit.enforce(current_caller())  # authenticate every API request; views check roles


def _end_request(response):
    response.headers["X-Request-Id"] = g.get("request_id", "")
    return response


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    try:
        settings = get_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(4) from None  # gunicorn's APP_LOAD_ERROR: halt, don't respawn
    configure_logging(settings.log_level)
    app = Flask(__name__)
    app.config.update(_openapi_config(), MAX_CONTENT_LENGTH=MAX_BODY_BYTES, JSON_SORT_KEYS=False)
    app.config.update(test_config or {})
    api = Api(app)
    for blueprint in BLUEPRINTS:
        api.register_blueprint(blueprint)
    register_error_handlers(app)  # after Api(): replaces flask-smorest's own error shape
    init_context(app)
    instrument(app)  # first: a request refused by _begin_request is counted too
    app.before_request(_begin_request)
    app.after_request(_end_request)
    return app
