"""The recording seam between graph nodes and the audit trail.

Nodes report what happened to a :class:`Recorder`; the SQL ledger
(``agentflow.checkpoints.ledger.Ledger``) and the Langfuse tracer implement it, and
:class:`FanOutRecorder` sends each record to several. Recording must never change what
the agent does, so recorders swallow nothing silently but nodes never branch on them.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from agentflow.decision import Decision

__all__ = [
    "ApprovalRecord",
    "FanOutRecorder",
    "LlmCallRecord",
    "NullRecorder",
    "Recorder",
    "RunContext",
    "ToolCallRecord",
]


class RunContext(BaseModel):
    """Where a record comes from."""

    model_config = ConfigDict(frozen=True)

    thread_id: str
    """LangGraph thread (one conversation / one durable run)."""
    run_id: str
    """One invocation or resumption of the thread."""
    graph: str = ""
    """Graph module or name."""
    node: str = ""
    """Node that produced the record."""
    trace_id: str | None = None
    """Langfuse/OpenTelemetry trace id when tracing is on."""


class LlmCallRecord(BaseModel):
    """One call to the large model."""

    purpose: str
    """plan, replan, escalation:<role>, respond, ..."""
    model: str
    """Model name."""
    input_tokens: int = 0
    """Prompt tokens (estimated when the endpoint does not report them)."""
    output_tokens: int = 0
    """Completion tokens."""
    latency_ms: float = 0.0
    """Wall time."""
    cost_estimate: float = 0.0
    """Estimated price in the settings' currency unit."""


ToolOutcome = Literal[
    "ok", "replayed", "failed", "refused", "needs_approval", "outcome_unknown", "in_flight"
]


class ToolCallRecord(BaseModel):
    """One guarded tool execution attempt."""

    tool: str
    """Tool name."""
    args: dict[str, Any]
    """Arguments as executed."""
    idempotency_key: str | None
    """Derived key (None for safe calls run without the store)."""
    consequence: str
    """Consequence class the call ran under."""
    outcome: ToolOutcome
    """What happened."""
    error: str | None = None
    """Error text when it did not succeed."""
    latency_ms: float = 0.0
    """Wall time of the tool (0 when replayed)."""


class ApprovalRecord(BaseModel):
    """One answer (or refused answer) to an approval request."""

    approval_id: str
    """Approval request id."""
    tool: str
    """Tool the approval is about."""
    digest: str
    """Digest of the pending action's arguments."""
    decision: str
    """approve / reject / edit / respond / requested / refused."""
    approver: str | None = None
    """Who answered (None for the request itself)."""
    reason: str | None = None
    """Why a refused answer was refused, or the approver's message."""
    payload: dict[str, Any] = Field(default_factory=dict)
    """The interrupt payload (tool, args, assessment)."""


@runtime_checkable
class Recorder(Protocol):
    """Receives every decision, LLM call, tool call and approval of a run."""

    def decision(self, ctx: RunContext, decision: Decision[Any]) -> None:
        """Record one decision (small model, LLM verdict or rule)."""

    def llm_call(self, ctx: RunContext, record: LlmCallRecord) -> None:
        """Record one LLM call."""

    def tool_call(self, ctx: RunContext, record: ToolCallRecord) -> None:
        """Record one tool execution attempt."""

    def approval(self, ctx: RunContext, record: ApprovalRecord) -> None:
        """Record an approval request or answer."""


class NullRecorder:
    """Discards everything (unit tests of single nodes)."""

    def decision(self, ctx: RunContext, decision: Decision[Any]) -> None:
        """Discard."""

    def llm_call(self, ctx: RunContext, record: LlmCallRecord) -> None:
        """Discard."""

    def tool_call(self, ctx: RunContext, record: ToolCallRecord) -> None:
        """Discard."""

    def approval(self, ctx: RunContext, record: ApprovalRecord) -> None:
        """Discard."""


class FanOutRecorder:
    """Sends every record to each of several recorders, in order."""

    def __init__(self, *recorders: Recorder) -> None:
        self.recorders = recorders

    def decision(self, ctx: RunContext, decision: Decision[Any]) -> None:
        """Forward to all."""
        for r in self.recorders:
            r.decision(ctx, decision)

    def llm_call(self, ctx: RunContext, record: LlmCallRecord) -> None:
        """Forward to all."""
        for r in self.recorders:
            r.llm_call(ctx, record)

    def tool_call(self, ctx: RunContext, record: ToolCallRecord) -> None:
        """Forward to all."""
        for r in self.recorders:
            r.tool_call(ctx, record)

    def approval(self, ctx: RunContext, record: ApprovalRecord) -> None:
        """Forward to all."""
        for r in self.recorders:
            r.approval(ctx, record)
