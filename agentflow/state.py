"""Agent state: what a thread carries between nodes and across checkpoints.

Values are plain JSON (dicts, lists, strings) so every checkpointer can store them and a
resumed run reads exactly what was written. Append-only fields use reducers so nodes
only return what they add.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AgentState", "Observation", "Plan", "PlanStep", "RunStatus"]

RunStatus = Literal["running", "done", "waiting_approval", "failed"]
"""Where a run stands; ``waiting_approval`` means an interrupt is pending."""


class PlanStep(BaseModel):
    """One tool call the agent intends to make."""

    model_config = ConfigDict(frozen=True)

    tool: str
    """Registered tool name."""
    args: dict[str, Any] = Field(default_factory=dict)
    """Arguments, validated against the tool's input schema before execution."""
    why: str = ""
    """What this step is for (shown to approvers)."""


class Plan(BaseModel):
    """An ordered list of tool calls towards a goal."""

    goal: str
    """What the user asked for, in one sentence."""
    steps: list[PlanStep]
    """Steps in order; the cursor in the state says which one is next."""


class Observation(BaseModel):
    """The result of executing one plan step."""

    step: int
    """Index of the plan step."""
    tool: str
    """Tool that ran (or was refused)."""
    status: str
    """Executor status: ok, replayed, failed, refused, needs_approval, outcome_unknown, ..."""
    output: Any = None
    """Tool output (JSON)."""
    error: str | None = None
    """Error text when the step did not succeed."""


def _replace(_old: Any, new: Any) -> Any:
    return new


class AgentState(TypedDict, total=False):
    """The state of one agent thread (LangGraph channels)."""

    messages: Annotated[list[AnyMessage], add_messages]
    """Conversation: the user's request and the agent's answers."""
    customer: dict[str, Any]
    """Who is asking (e.g. the logged-in customer's email); set by the caller."""
    route: str | None
    """The route the router chose."""
    request: str | None
    """What this turn works on: the latest user message, after the earlier request when the
    agent's last answer asked for missing details (see ``awaiting``)."""
    awaiting: dict[str, Any] | None
    """What the agent's last answer asked the user for: the ``request`` it could not finish
    and the ``missing`` fields, which the next message completes, or the fields to
    ``confirm`` (with the ``route`` and the ``fields`` found), which a yes confirms."""
    confirmed: dict[str, Any] | None
    """Fields the user has just confirmed (a yes to the agent's question); the planner
    plans with them instead of extracting again."""
    deferred: list[str] | None
    """Further requests of the user's message that this turn does not handle, in order;
    a reply of yes takes the next one up."""
    extracted: dict[str, Any] | None
    """Fields extracted from the request for the route's flow."""
    context: list[dict[str, Any]]
    """Documents kept by context pruning, passed to the LLM."""
    plan: dict[str, Any] | None
    """The current :class:`Plan` as JSON."""
    cursor: int
    """Index of the next plan step."""
    assessment: dict[str, Any] | None
    """Consequence assessment of the step at the cursor."""
    observations: Annotated[list[dict[str, Any]], operator.add]
    """Every executed step's :class:`Observation` as JSON."""
    decisions: Annotated[list[dict[str, Any]], operator.add]
    """Every :class:`~agentflow.decision.Decision` taken, as JSON, in order."""
    llm_calls: Annotated[int, operator.add]
    """How many times the LLM was called in this thread."""
    llm_tokens: Annotated[int, operator.add]
    """LLM tokens used (prompt + completion)."""
    iterations: Annotated[int, operator.add]
    """Loop iterations so far (act + evaluate)."""
    errors: Annotated[int, operator.add]
    """Failed steps so far (the error budget)."""
    pending_approval: Annotated[dict[str, Any] | None, _replace]
    """The approval payload while the run waits for a human."""
    approvals: Annotated[list[dict[str, Any]], operator.add]
    """Answered approvals (id, decision, approver, digest)."""
    loop_verdict: str | None
    """The loop evaluator's last verdict."""
    status: RunStatus
    """Where the run stands."""
    outcome: str | None
    """The final answer or the reason the run stopped."""
