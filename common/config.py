"""Settings read from the environment once, validated at start.

A bad or missing value raises ConfigError naming the variable; entry points turn it into
one line on stderr and a non-zero exit, so a misconfigured process never half-starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from dotenv import load_dotenv


class ConfigError(Exception):
    """A configuration variable is missing or invalid."""


def _int(name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigError(f"{name} must be {bound}, got {value}")
    return value


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, "").strip().lower() or default
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is required but not set")
    return value


def _url(name: str, schemes: tuple[str, ...]) -> str:
    value = _required(name)
    if not value.startswith(tuple(f"{s}://" for s in schemes)):
        raise ConfigError(f"{name} must be a {'/'.join(schemes)} URL")
    return value


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    admin_token: str = field(repr=False)
    secret_key: str = field(repr=False)
    port: int = 3100
    log_level: str = "info"
    default_org_id: str = "default"
    permission_default: str = "allow"
    cache_policy: str = "readonly"
    cache_ttl_seconds: int = 300
    health_ping_interval_seconds: int = 30
    tool_refresh_interval_seconds: int = 300
    job_ttl_seconds: int = 86400
    stdio_command_allowlist: tuple[str, ...] = ()
    allow_private_urls: bool = False
    worker_concurrency: int = 16
    wait_ms_max: int = 120_000
    call_timeout_ms: int = 60_000
    call_timeout_ms_max: int = 300_000
    redis_prefix: str = "mcpgw:"
    flower_basic_auth: str = field(default="", repr=False)
    rate_limit_per_minute: int = 600
    usage_max_payload_bytes: int = 65536
    tool_change_policy: str = "quarantine"
    new_tool_policy: str = "enable"
    metrics_token: str = field(default="", repr=False)
    celery_task_events: bool = True

    @property
    def permission_default_allowed(self) -> bool:
        return self.permission_default == "allow"


def load_settings() -> Settings:
    """Read and validate every variable; raises ConfigError on the first bad one."""
    admin_token = _required("GATEWAY_ADMIN_TOKEN")
    if len(admin_token) < 32:
        raise ConfigError("GATEWAY_ADMIN_TOKEN must be at least 32 characters")
    secret_key = _required("SECRET_KEY")
    if len(secret_key) < 16:
        raise ConfigError("SECRET_KEY must be at least 16 characters")
    flower_auth = os.environ.get("FLOWER_BASIC_AUTH", "").strip()
    if flower_auth and ":" not in flower_auth:
        raise ConfigError("FLOWER_BASIC_AUTH must be user:password")
    call_timeout_max = _int("CALL_TIMEOUT_MS_MAX", 300_000, minimum=1000)
    allowlist = os.environ.get("STDIO_COMMAND_ALLOWLIST", "")
    values: dict[str, Any] = dict(
        database_url=_url("DATABASE_URL", ("postgresql", "postgresql+psycopg2")),
        redis_url=_url("REDIS_URL", ("redis", "rediss", "unix")),
        admin_token=admin_token,
        secret_key=secret_key,
        port=_int("PORT", 3100, minimum=1, maximum=65535),
        log_level=_choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
        default_org_id=os.environ.get("DEFAULT_ORG_ID", "").strip() or "default",
        permission_default=_choice("PERMISSION_DEFAULT", "allow", ("allow", "deny")),
        cache_policy=_choice("CACHE_POLICY", "readonly", ("readonly", "all", "none")),
        cache_ttl_seconds=_int("CACHE_TTL_SECONDS", 300),
        health_ping_interval_seconds=_int("HEALTH_PING_INTERVAL_SECONDS", 30, minimum=1),
        tool_refresh_interval_seconds=_int("TOOL_REFRESH_INTERVAL_SECONDS", 300, minimum=1),
        job_ttl_seconds=_int("JOB_TTL_SECONDS", 86400, minimum=60),
        stdio_command_allowlist=tuple(p.strip() for p in allowlist.split(",") if p.strip()),
        allow_private_urls=_bool("ALLOW_PRIVATE_URLS", False),
        worker_concurrency=_int("WORKER_CONCURRENCY", 16, minimum=1, maximum=512),
        wait_ms_max=_int("WAIT_MS_MAX", 120_000, minimum=0),
        call_timeout_ms=_int("CALL_TIMEOUT_MS", 60_000, minimum=1, maximum=call_timeout_max),
        call_timeout_ms_max=call_timeout_max,
        redis_prefix=os.environ.get("REDIS_PREFIX", "mcpgw:"),
        flower_basic_auth=flower_auth,
        rate_limit_per_minute=_int("RATE_LIMIT_PER_MINUTE", 600),
        usage_max_payload_bytes=_int("USAGE_MAX_PAYLOAD_BYTES", 65536, minimum=256),
        tool_change_policy=_choice("TOOL_CHANGE_POLICY", "quarantine", ("quarantine", "accept")),
        new_tool_policy=_choice("NEW_TOOL_POLICY", "enable", ("enable", "disable")),
        metrics_token=os.environ.get("METRICS_TOKEN", "").strip(),
        celery_task_events=_bool("CELERY_TASK_EVENTS", True),
    )
    return Settings(**values)


@cache
def get_settings() -> Settings:
    """The process's settings; `.env` fills only variables the environment leaves unset."""
    load_dotenv(override=False)
    return load_settings()
