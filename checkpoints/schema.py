"""The ledger's tables (SQLAlchemy 2.x Core), the same on SQLite and Postgres.

This module describes the *current* schema, for queries and for autogenerating the
next migration. The database itself is only ever changed by the Alembic migrations in
``checkpoints/migrations/versions/`` (append-only), applied by ``agentflow setup``.

Times are stored in UTC; :class:`UtcDateTime` makes SQLite (which has no time zones)
hand back aware datetimes like Postgres does. JSON columns use the portable ``JSON``
type so values round-trip on both engines. The frozen ``*Row`` models the ledger hands
back live in :mod:`agentflow.checkpoints.rows` (re-exported here).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator

# The row models live in agentflow.checkpoints.rows; re-exported so existing imports keep working.
from agentflow.checkpoints.rows import (
    ApprovalRow,
    DecisionRow,
    HeadVersionRow,
    LabeledInput,
    LabelRow,
    LabelSource,
    LlmCallRow,
    ToolCallRow,
)

__all__ = [
    "VERSION_TABLE",
    "ApprovalRow",
    "DecisionRow",
    "HeadVersionRow",
    "LabelRow",
    "LabelSource",
    "LabeledInput",
    "LlmCallRow",
    "ToolCallRow",
    "UtcDateTime",
    "approvals",
    "decisions",
    "effects",
    "head_versions",
    "labels",
    "llm_calls",
    "metadata",
    "tool_calls",
    "utc",
]

VERSION_TABLE = "agentflow_alembic_version"
"""Alembic's bookkeeping table; prefixed so a user's own Alembic in the same DB never clashes."""

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
"""All ledger tables; named constraints keep future SQLite batch migrations possible."""


def utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (a naive one is taken to be UTC already)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back time-zone aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Normalise to UTC before storing (SQLite keeps the wall clock, not the zone)."""
        return None if value is None else utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Attach UTC to the naive values SQLite returns."""
        return None if value is None else utc(value)


def _run_columns() -> list[Column[Any]]:
    """Where a record comes from (``agentflow.recording.RunContext``)."""
    return [
        Column("thread_id", String(255), nullable=False),
        Column("run_id", String(255), nullable=False),
        Column("graph", String(255), nullable=False, default=""),
        Column("node", String(255), nullable=False, default=""),
        Column("trace_id", String(64), nullable=True),
    ]


decisions = Table(
    "decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", UtcDateTime(), nullable=False),
    *_run_columns(),
    Column("role", String(64), nullable=False),
    Column("input", JSON, nullable=True),
    Column("value", JSON, nullable=True),
    Column("confidence", Float, nullable=False),
    Column("source", String(32), nullable=False),
    Column("model_name", String(255), nullable=True),
    Column("model_sha256", String(64), nullable=True),
    Column("latency_ms", Float, nullable=False),
    Column("escalated", Boolean, nullable=False),
    Column("calibrated", Boolean, nullable=False),
    Column("rationale", Text, nullable=True),
    Column("scores", JSON, nullable=True),
    Index(None, "role", "created_at"),
    Index(None, "thread_id"),
    Index(None, "created_at"),
)
"""Every control-flow decision, with the input that produced it."""

llm_calls = Table(
    "llm_calls",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", UtcDateTime(), nullable=False),
    *_run_columns(),
    Column("purpose", String(128), nullable=False),
    Column("model", String(255), nullable=False),
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("cost_estimate", Float, nullable=False),
    Index(None, "created_at"),
)
"""Every call to the large model, with tokens and estimated cost."""

tool_calls = Table(
    "tool_calls",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", UtcDateTime(), nullable=False),
    *_run_columns(),
    Column("idempotency_key", String(255), nullable=True),
    Column("tool", String(255), nullable=False),
    Column("args", JSON, nullable=True),
    Column("consequence", String(32), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("error", Text, nullable=True),
    Column("latency_ms", Float, nullable=False),
    Index(None, "created_at"),
    Index(None, "idempotency_key"),
)
"""Every guarded tool execution attempt and its outcome."""

approvals = Table(
    "approvals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", UtcDateTime(), nullable=False),
    *_run_columns(),
    Column("approval_id", String(255), nullable=False),
    Column("tool", String(255), nullable=False),
    Column("digest", String(128), nullable=False),
    Column("decision", String(32), nullable=False),
    Column("approver", String(255), nullable=True),
    Column("reason", Text, nullable=True),
    Column("payload", JSON, nullable=True),
    Index(None, "approval_id"),
    Index(None, "created_at"),
)
"""Every approval request and every (accepted or refused) answer."""

labels = Table(
    "labels",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "decision_id",
        Integer,
        ForeignKey("decisions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("value", JSON, nullable=True),
    Column("labeled_by", String(255), nullable=False),
    Column("source", String(16), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    CheckConstraint("source IN ('human', 'llm')", name="source"),
    Index(None, "decision_id"),
)
"""What a decision should have been, according to a person or the LLM."""

head_versions = Table(
    "head_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("role", String(64), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("path", Text, nullable=False),
    Column("metrics", JSON, nullable=True),
    Column("accepted", Boolean, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Index(None, "role", "created_at"),
)
"""Every trained head, kept or rejected, with its hash and evaluation metrics."""

effects = Table(
    "effects",
    metadata,
    Column("idempotency_key", String(255), primary_key=True),
    Column("thread_id", String(255), nullable=False),
    Column("tool", String(255), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("result", JSON, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    CheckConstraint(
        "outcome IN ('started', 'completed', 'failed', 'outcome_unknown', 'released')",
        name="outcome",
    ),
    Index(None, "thread_id"),
)
"""The durable outcome of every guarded call that is not safe, by idempotency key: what
the store's records (which expire) are a cache of (see ``agentflow.tools.journal``)."""
