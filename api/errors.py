"""One error shape for every failure: `{"error": {"code", "message", "details"}}`.

GatewayError carries its own status and code; Flask/werkzeug HTTP errors (404, 405, 413, webargs'
400/422) are mapped to stable codes; anything unexpected is a 500 with a request id and no details.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, g, jsonify
from redis import RedisError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from common.errors import GatewayError
from common.logs import get_logger

log = get_logger(__name__)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> tuple[Response, int]:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return jsonify(body), status


def _flatten_messages(messages: dict[str, Any]) -> dict[str, Any]:
    """webargs nests errors by location (`json`, `query`); callers care about the fields."""
    fields: dict[str, Any] = {}
    for value in messages.values():
        if isinstance(value, dict):
            fields.update(value)
    return fields


def handle_http_exception(exc: HTTPException) -> tuple[Response, int]:
    status = exc.code or 500
    messages = (getattr(exc, "data", None) or {}).get("messages")
    if status == 400 and messages and "json" in messages:
        return error_response(400, "invalid_json", "The request body is not valid JSON.")
    if status == 422 and messages:
        return error_response(
            422,
            "validation_error",
            "The request does not match the schema.",
            {"fields": _flatten_messages(messages)},
        )
    code = HTTP_CODES.get(status, "http_error")
    return error_response(status, code, exc.description or code.replace("_", " "))


def handle_gateway_error(exc: GatewayError) -> tuple[Response, int]:
    response, status = error_response(exc.status, exc.code, exc.message, exc.details)
    response.headers.update(exc.headers)
    return response, status


def handle_unexpected(exc: Exception) -> tuple[Response, int]:
    request_id = g.get("request_id", "")
    log.exception("unhandled_error", request_id=request_id)
    return error_response(
        500, "internal_error", "An unexpected error occurred.", {"requestId": request_id}
    )


def handle_redis_down(exc: RedisError) -> tuple[Response, int]:
    log.error("redis_unavailable", error=type(exc).__name__)
    return error_response(503, "redis_unavailable", "The gateway's Redis is unreachable.")


def handle_database_down(exc: OperationalError) -> tuple[Response, int]:
    log.error("database_unavailable", error=type(exc.orig).__name__)
    return error_response(503, "database_unavailable", "The gateway's database is unreachable.")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(GatewayError, handle_gateway_error)
    app.register_error_handler(RedisError, handle_redis_down)
    app.register_error_handler(OperationalError, handle_database_down)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
