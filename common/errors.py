"""The gateway's error type: a stable code, an HTTP status and a human sentence.

Raised anywhere (API, registry, permissions); the API turns it into
`{"error": {"code", "message", "details"}}`.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.status = status or self.status
        self.details = details or {}
        self.headers: dict[str, str] = {}

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class Unauthorized(GatewayError):
    status, code = 401, "unauthorized"


class Forbidden(GatewayError):
    status, code = 403, "forbidden"


class NotFound(GatewayError):
    status, code = 404, "not_found"


class Conflict(GatewayError):
    status, code = 409, "conflict"


class Unprocessable(GatewayError):
    status, code = 422, "validation_error"


class Unavailable(GatewayError):
    status, code = 503, "unavailable"


class RateLimited(GatewayError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, details={"retryAfterSeconds": retry_after})
        self.headers = {"Retry-After": str(retry_after)}
