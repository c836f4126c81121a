"""The effects journal: the durable outcome of every guarded call that is not safe.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

One row per idempotency key: started (before the tool runs), completed with its result
(before the store is told), failed, outcome unknown, or released; so a record that
expired from Redis, or a lease that ended with the process, still answers "this already
happened" (agentflow.tools.journal).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``effects``."""
    op.create_table(
        "effects",
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("thread_id", sa.String(255), nullable=False),
        sa.Column("tool", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('started', 'completed', 'failed', 'outcome_unknown', 'released')",
            name="ck_effects_outcome",
        ),
        sa.PrimaryKeyConstraint("idempotency_key", name="pk_effects"),
    )
    op.create_index("ix_effects_thread_id", "effects", ["thread_id"])


def downgrade() -> None:
    """Drop ``effects``."""
    op.drop_table("effects")
