"""The ledger's tables (SQLAlchemy 2.x Core), the same on SQLite and Postgres.

This module describes the *current* schema, for queries and for autogenerating the
next migration. The database itself is only ever changed by the Alembic migrations in
``checkpoints/migrations/versions/`` (append-only), applied by ``agentflow setup``.

Times are stored in UTC; :class:`UtcDateTime` makes SQLite (which has no time zones)
hand back aware datetimes like Postgres does. JSON columns use the portable ``JSON``
type so values round-trip on both engines. The frozen ``*Row`` models are what
``checkpoints.ledger.Ledger`` hands back when it is queried.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict
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
    "head_versions",
    "labels",
    "llm_calls",
    "metadata",
    "tool_calls",
    "utc",
]

VERSION_TABLE = "agentflow_alembic_version"
"""Alembic's bookkeeping table; prefixed so a user's own Alembic in the same DB never clashes."""

LabelSource = Literal["human", "llm"]
"""Who labelled a decision: a reviewer, or the LLM's verdict on an escalated decision."""

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


# --- rows as read back by the ledger ------------------------------------------------


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    """Primary key (the id a reviewer labels, for decisions)."""
    created_at: datetime
    """When it was recorded (UTC)."""


class _RunRow(_Row):
    thread_id: str
    """LangGraph thread."""
    run_id: str
    """Invocation or resumption of the thread."""
    graph: str
    """Graph module or name."""
    node: str
    """Node that produced the record."""
    trace_id: str | None
    """Langfuse/OpenTelemetry trace id, when tracing was on."""


class DecisionRow(_RunRow):
    """One recorded decision."""

    role: str
    """Which role decided."""
    input: Any
    """The input that produced the decision (JSON)."""
    value: Any
    """The decision's value (JSON)."""
    confidence: float
    """Confidence in [0, 1]."""
    source: str
    """slm:encoder, slm:gguf, slm:remote, llm or rule."""
    model_name: str | None
    """Name of the deciding artifact."""
    model_sha256: str | None
    """sha256 of the deciding artifact."""
    latency_ms: float
    """Wall time of the decision."""
    escalated: bool
    """Taken because a smaller model was not trusted."""
    calibrated: bool
    """Whether the confidence was calibrated."""
    rationale: str | None
    """Why, in words, when the decider gave one."""
    scores: dict[str, float] | None
    """Probabilities of the candidate values."""


class LlmCallRow(_RunRow):
    """One recorded LLM call."""

    purpose: str
    """plan, replan, escalation:<role>, respond, ..."""
    model: str
    """Model name."""
    input_tokens: int
    """Prompt tokens."""
    output_tokens: int
    """Completion tokens."""
    latency_ms: float
    """Wall time."""
    cost_estimate: float
    """Estimated price."""


class ToolCallRow(_RunRow):
    """One recorded tool execution attempt."""

    idempotency_key: str | None
    """Derived idempotency key (None for safe calls)."""
    tool: str
    """Tool name."""
    args: Any
    """Arguments as executed (JSON)."""
    consequence: str
    """Consequence class the call ran under."""
    outcome: str
    """ok, replayed, failed, refused, needs_approval, outcome_unknown or in_flight."""
    error: str | None
    """Error text when it did not succeed."""
    latency_ms: float
    """Wall time of the tool."""


class ApprovalRow(_RunRow):
    """One recorded approval request or answer."""

    approval_id: str
    """Approval request id."""
    tool: str
    """Tool the approval is about."""
    digest: str
    """Digest of the pending action's arguments."""
    decision: str
    """approve / reject / edit / respond / requested / refused."""
    approver: str | None
    """Who answered."""
    reason: str | None
    """Why a refused answer was refused, or the approver's message."""
    payload: Any
    """The interrupt payload (JSON)."""


class LabelRow(_Row):
    """What a decision should have been."""

    decision_id: int
    """The labelled decision."""
    value: Any
    """The right value (JSON)."""
    labeled_by: str
    """Reviewer name, or the LLM model name."""
    source: LabelSource
    """human or llm."""


class HeadVersionRow(_Row):
    """One trained head version."""

    role: str
    """Role the head serves."""
    sha256: str
    """sha256 of the head artifact."""
    path: str
    """Where the artifact was written."""
    metrics: Any
    """Evaluation metrics (JSON): old vs new accuracy, ECE, ..."""
    accepted: bool
    """Whether it replaced the previous head."""


class LabeledInput(NamedTuple):
    """A training example taken from the ledger: an input and its labelled value."""

    input: Any
    """The decision's input."""
    value: Any
    """The label's value."""
    source: LabelSource
    """human or llm."""
