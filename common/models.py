"""The gateway's tables (design §3). Ids are cuids; JSON columns are JSONB.

Usage rows keep plain tool/server ids (no foreign keys): usage is history and outlives
the servers and tools it mentions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from common.ids import new_id


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {dict[str, Any]: JSONB, datetime: DateTime(timezone=True)}


def _id() -> Mapped[str]:
    return mapped_column(String(32), primary_key=True, default=new_id)


def _created() -> Mapped[datetime]:
    return mapped_column(default=utcnow, nullable=False)


class McpServer(Base):
    __tablename__ = "mcp_servers"

    id: Mapped[str] = _id()
    org_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    transport: Mapped[str] = mapped_column(String(8))
    config: Mapped[dict[str, Any]]
    # Bumped on every config change; workers recycle sessions opened with an older version.
    config_version: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="disconnected")
    desired_state: Mapped[str] = mapped_column(String(16), default="connected")
    last_ping_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    tools: Mapped[list[McpTool]] = relationship(
        back_populates="server", cascade="all, delete-orphan", passive_deletes=True
    )


class McpTool(Base):
    __tablename__ = "mcp_tools"
    __table_args__ = (UniqueConstraint("server_id", "name"),)

    id: Mapped[str] = _id()
    server_id: Mapped[str] = mapped_column(ForeignKey("mcp_servers.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    input_schema: Mapped[dict[str, Any]]
    output_schema: Mapped[dict[str, Any] | None]
    annotations: Mapped[dict[str, Any] | None]
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    cache_ttl_seconds: Mapped[int | None]
    definition_hash: Mapped[str] = mapped_column(String(64), default="")
    disabled_reason: Mapped[str | None] = mapped_column(String(32))
    last_seen_at: Mapped[datetime | None]
    removed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    server: Mapped[McpServer] = relationship(back_populates="tools")
    permissions: Mapped[list[McpToolPermission]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )


class McpToolPermission(Base):
    __tablename__ = "mcp_tool_permissions"
    __table_args__ = (UniqueConstraint("tool_id", "agent_type"),)

    id: Mapped[str] = _id()
    tool_id: Mapped[str] = mapped_column(ForeignKey("mcp_tools.id", ondelete="CASCADE"))
    agent_type: Mapped[str] = mapped_column(String(64))
    allowed: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class McpToolUsage(Base):
    __tablename__ = "mcp_tool_usage"
    __table_args__ = (
        Index("ix_usage_created_at", "created_at"),
        Index("ix_usage_tool_created", "tool_id", "created_at"),
        Index("ix_usage_caller_created", "caller_id", "created_at"),
        Index("ix_usage_server_created", "server_id", "created_at"),
        # Analytics (common.analytics) reads only these columns: index-only scans per org.
        Index(
            "ix_usage_org_created",
            "org_id",
            "created_at",
            postgresql_include=[
                "tool_id",
                "server_id",
                "server_slug",
                "tool_name",
                "caller_id",
                "status",
                "cached",
                "duration_ms",
            ],
        ),
    )

    id: Mapped[str] = _id()
    org_id: Mapped[str] = mapped_column(String(64))
    tool_id: Mapped[str | None] = mapped_column(String(32))
    server_id: Mapped[str | None] = mapped_column(String(32))
    tool_name: Mapped[str] = mapped_column(String(200))
    server_slug: Mapped[str] = mapped_column(String(63))
    job_id: Mapped[str | None] = mapped_column(String(32))
    caller_id: Mapped[str] = mapped_column(String(200))
    caller_type: Mapped[str] = mapped_column(String(16))
    agent_type: Mapped[str] = mapped_column(String(64))
    input: Mapped[dict[str, Any] | None]
    output: Mapped[dict[str, Any] | None]
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(64))
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = _created()


class McpUsageRollup(Base):
    """Usage pre-aggregated for analytics over wide windows (common.analytics), kept in step with
    `mcp_tool_usage` by statement triggers (migration 0003) in the inserting transaction.

    One row per org, dimension and period: dim `all` (key '') per UTC hour; `tool`, `server`,
    `caller`, `status` (key = that column; a NULL tool/server id is '') per UTC day. Counts and
    the duration sum are exact; `histogram[b + 1]` counts the rows whose duration falls in bucket
    b of `mcp_usage_bucket` (one bucket per ms below 20 ms, then 5 % wide).
    """

    __tablename__ = "mcp_usage_rollup"

    org_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    dim: Mapped[str] = mapped_column(String(8), primary_key=True)
    period: Mapped[datetime] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    success: Mapped[int] = mapped_column(BigInteger)
    error: Mapped[int] = mapped_column(BigInteger)
    timeout: Mapped[int] = mapped_column(BigInteger)
    denied: Mapped[int] = mapped_column(BigInteger)
    cached: Mapped[int] = mapped_column(BigInteger)
    duration_sum: Mapped[int] = mapped_column(BigInteger)
    histogram: Mapped[list[int]] = mapped_column(ARRAY(Integer))


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = _id()
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    org_id: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(16))
    caller_id: Mapped[str] = mapped_column(String(200))
    caller_type: Mapped[str] = mapped_column(String(16))
    agent_type: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _created()
    revoked_at: Mapped[datetime | None]
