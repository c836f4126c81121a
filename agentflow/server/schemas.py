"""The HTTP API's request and response bodies (what ``/openapi.json`` documents)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentflow.nodes.approval import ApprovalKind
from agentflow.runtime import RunResult

__all__ = [
    "THREAD_ID_PATTERN",
    "AnswerRequest",
    "ErrorBody",
    "PendingApproval",
    "RunRequest",
    "ThreadView",
]

THREAD_ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,128}$"
"""Thread ids the API accepts: what ``AgentRuntime`` and LangGraph generate, nothing odd."""


class ErrorBody(BaseModel):
    """Every error the API answers with."""

    error: str
    """What went wrong."""
    fix: str
    """What to do about it."""
    details: list[dict[str, Any]] | None = None
    """Field-by-field validation errors, for 422 answers."""


class RunRequest(BaseModel):
    """Start a run: one user message on a new (or given) thread."""

    model_config = ConfigDict(extra="forbid")

    graph: str | None = None
    """Name of the graph to run; omitted: the one this server serves."""
    message: str = Field(min_length=1, max_length=20_000)
    """The user's message."""
    thread_id: str | None = Field(default=None, pattern=THREAD_ID_PATTERN)
    """Continue this thread (one you started); omitted: a new thread.

    Whom the run acts for is not a field: it comes from the token (``customer`` of its
    ``AGENTFLOW_TOKENS`` entry), so nobody can act for somebody else.
    """


class RunAccepted(BaseModel):
    """The answer to ``POST /runs`` with ``Prefer: respond-async`` (HTTP 202)."""

    thread_id: str
    """The thread the run goes on in."""
    status: Literal["running"] = "running"
    """Always ``running`` here; the status URL tells the rest."""
    status_url: str
    """Where to poll the run (``GET /runs/{thread_id}``), also in the ``Location`` header."""


class AnswerRequest(BaseModel):
    """An approver's answer; the approver is the owner of the bearer token."""

    model_config = ConfigDict(extra="forbid")

    approval_id: str = Field(min_length=1, max_length=200)
    """The pending approval answered."""
    decision: ApprovalKind
    """approve, reject, edit (new ``args``) or respond (a ``message`` back to the agent)."""
    digest: str = Field(min_length=1, max_length=200)
    """Digest of the action the approver saw; must be the pending action's."""
    args: dict[str, Any] | None = None
    """New arguments for the same tool (``edit`` only)."""
    tool: str | None = None
    """Tool of an edited action; if given it must be the pending tool."""
    message: str | None = Field(default=None, max_length=5_000)
    """Message back to the agent (``respond``), or a note kept in the ledger."""
    approver: str | None = None
    """Optional; if given it must be the token's owner (otherwise 403)."""


class ThreadView(RunResult):
    """A thread's state: the run result plus its audit trail and trace."""

    graph: str
    """Name of the graph the thread runs."""
    request: str | None = None
    """The user's first message in the thread."""
    approvals: list[dict[str, Any]] = Field(default_factory=list)
    """Approval answers recorded in the ledger for this thread (refused ones included)."""
    trace_url: str | None = None
    """The thread's trace in Langfuse, when tracing is on."""


class PendingApproval(BaseModel):
    """One action waiting for a human, with what led there."""

    graph: str
    """Name of the graph the thread runs."""
    thread_id: str
    """Thread that waits."""
    approval_id: str
    """Id to answer with."""
    tool: str
    """Tool that would run."""
    args: dict[str, Any]
    """Arguments it would run with."""
    digest: str
    """Digest to answer with (what an approval approves)."""
    assessment: dict[str, Any]
    """Consequence class, floor, confidence, source and rationale."""
    goal: str = ""
    """What the plan is for."""
    step: int = 0
    """Plan step of the action."""
    request: str = ""
    """The user's message this action answers (in a long thread: that turn's, not the first)."""
    renewal: int = 0
    """How many times the action was asked again because its approval expired."""
    edit_of: str | None = None
    """The approval whose edit wrote these arguments, if any."""
    approval_valid_s: float
    """How long an approval, once given, stays usable before the call must be asked again."""
    route: str | None = None
    """Route the router chose."""
    decisions: list[dict[str, Any]] = Field(default_factory=list)
    """The decisions that led here, oldest first."""
    trace_url: str | None = None
    """The thread's trace in Langfuse, when tracing is on."""
