"""The initial ledger: decisions, LLM calls, tool calls, approvals, labels, head versions.

Revision ID: 0001
Revises:
Create Date: 2026-11-20

Written out column by column (not imported from ``agentflow.checkpoints.schema``) so this
revision keeps meaning what it meant when released, whatever the schema becomes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when() -> sa.Column[object]:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def _run_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("thread_id", sa.String(255), nullable=False),
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("graph", sa.String(255), nullable=False),
        sa.Column("node", sa.String(255), nullable=False),
        sa.Column("trace_id", sa.String(64), nullable=True),
    ]


def _pk() -> sa.Column[object]:
    return sa.Column("id", sa.Integer(), autoincrement=True, nullable=False)


def upgrade() -> None:
    """Create the six ledger tables and their indexes."""
    op.create_table(
        "decisions",
        _pk(),
        _when(),
        *_run_columns(),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("input", sa.JSON(), nullable=True),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("model_name", sa.String(255), nullable=True),
        sa.Column("model_sha256", sa.String(64), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("escalated", sa.Boolean(), nullable=False),
        sa.Column("calibrated", sa.Boolean(), nullable=False),
        sa.Column("rationale", sa.Text(), nullable=True),
        sa.Column("scores", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_decisions"),
    )
    op.create_index("ix_decisions_role_created_at", "decisions", ["role", "created_at"])
    op.create_index("ix_decisions_thread_id", "decisions", ["thread_id"])
    op.create_index("ix_decisions_created_at", "decisions", ["created_at"])

    op.create_table(
        "llm_calls",
        _pk(),
        _when(),
        *_run_columns(),
        sa.Column("purpose", sa.String(128), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("cost_estimate", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_llm_calls"),
    )
    op.create_index("ix_llm_calls_created_at", "llm_calls", ["created_at"])

    op.create_table(
        "tool_calls",
        _pk(),
        _when(),
        *_run_columns(),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("tool", sa.String(255), nullable=False),
        sa.Column("args", sa.JSON(), nullable=True),
        sa.Column("consequence", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tool_calls"),
    )
    op.create_index("ix_tool_calls_created_at", "tool_calls", ["created_at"])
    op.create_index("ix_tool_calls_idempotency_key", "tool_calls", ["idempotency_key"])

    op.create_table(
        "approvals",
        _pk(),
        _when(),
        *_run_columns(),
        sa.Column("approval_id", sa.String(255), nullable=False),
        sa.Column("tool", sa.String(255), nullable=False),
        sa.Column("digest", sa.String(128), nullable=False),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("approver", sa.String(255), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_approvals"),
    )
    op.create_index("ix_approvals_approval_id", "approvals", ["approval_id"])
    op.create_index("ix_approvals_created_at", "approvals", ["created_at"])

    op.create_table(
        "labels",
        _pk(),
        sa.Column("decision_id", sa.Integer(), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("labeled_by", sa.String(255), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        _when(),
        sa.CheckConstraint("source IN ('human', 'llm')", name="ck_labels_source"),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["decisions.id"],
            name="fk_labels_decision_id_decisions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_labels"),
    )
    op.create_index("ix_labels_decision_id", "labels", ["decision_id"])

    op.create_table(
        "head_versions",
        _pk(),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        _when(),
        sa.PrimaryKeyConstraint("id", name="pk_head_versions"),
    )
    op.create_index("ix_head_versions_role_created_at", "head_versions", ["role", "created_at"])


def downgrade() -> None:
    """Drop the ledger tables (labels first: it references decisions)."""
    for table in ("labels", "head_versions", "approvals", "tool_calls", "llm_calls", "decisions"):
        op.drop_table(table)
