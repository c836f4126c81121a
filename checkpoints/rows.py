"""What the ledger hands back when it is queried: frozen row models, one per table.

Each ``*Row`` mirrors a table of :mod:`agentflow.checkpoints.schema`. :class:`Episode` is not a
table: it joins one small-model decision with the LLM verdict (or safe default) that
overrode it, which is how escalation rates and distillation data are read from the trail.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

__all__ = [
    "ApprovalRow",
    "DecisionRow",
    "Episode",
    "HeadVersionRow",
    "LabelRow",
    "LabelSource",
    "LabeledInput",
    "LlmCallRow",
    "ToolCallRow",
]

LabelSource = Literal["human", "llm"]
"""Who labelled a decision: a reviewer, or the LLM's verdict on an escalated decision."""


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


class Episode(BaseModel):
    """One decision as the graph took it: the first decider's answer and what was acted on.

    A trusted small-model decision is its own episode (``first is final``); an untrusted
    one is followed in the trail by the LLM's verdict or the role's safe default, which
    becomes ``final``. Labels attach to ``first``: that is the decision a head is
    retrained to get right.
    """

    model_config = ConfigDict(frozen=True)

    first: DecisionRow
    """The first decision taken for this input (normally the small model's)."""
    final: DecisionRow
    """The decision the graph acted on (``first`` unless it escalated)."""

    @property
    def id(self) -> int:
        """The id reviewers label: the first decision's."""
        return self.first.id

    @property
    def escalated(self) -> bool:
        """Whether the graph acted on an escalated decision (LLM verdict or safe default)."""
        return self.final.escalated

    @property
    def verdict(self) -> DecisionRow | None:
        """The LLM's verdict on a small model's untrusted decision, if there is one."""
        overridden = self.final.id != self.first.id and self.first.source.startswith("slm:")
        return self.final if overridden and self.final.source == "llm" else None
