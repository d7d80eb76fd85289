"""usage: covering (org_id, created_at) index for analytics

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 06:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INCLUDED = [
    "tool_id",
    "server_id",
    "server_slug",
    "tool_name",
    "caller_id",
    "status",
    "cached",
    "duration_ms",
]


def upgrade() -> None:
    op.create_index(
        "ix_usage_org_created",
        "mcp_tool_usage",
        ["org_id", "created_at"],
        unique=False,
        postgresql_include=INCLUDED,
    )


def downgrade() -> None:
    op.drop_index("ix_usage_org_created", table_name="mcp_tool_usage")
