"""What the executor is asked and what it answers: a :class:`ToolCall` in, an
:class:`ExecutionResult` out (kept apart from the executor so that its protocol,
:mod:`agentflow.tools._protocol`, can build results without importing the executor)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from agentflow.consequence import ConsequenceClass
from agentflow.recording import ToolOutcome

__all__ = ["ExecutionResult", "ToolCall"]


class ToolCall(BaseModel):
    """One call the plan asks for."""

    tool: str
    """Registered tool name."""
    args: dict[str, Any] = Field(default_factory=dict)
    """Arguments, validated against the tool's input model."""
    step: int = 0
    """Plan step; part of the derived key, so the same call at another step is another call."""
    turn: str = ""
    """The user message the plan answers (see :mod:`agentflow.tools.keys`); part of the derived key."""
    key: str | None = None
    """Explicit idempotency key (e.g. from a client's Idempotency-Key); default: derived."""


class ExecutionResult(BaseModel):
    """What happened to one call."""

    status: ToolOutcome
    """ok, replayed, failed, refused, needs_approval, outcome_unknown, in_flight."""
    output: Any = None
    """The tool's output in JSON form (stored output when replayed)."""
    error: str | None = None
    """Why it did not succeed, or a warning next to ``ok`` (result not stored)."""
    key: str | None = None
    """The idempotency key (None for safe calls)."""
    consequence: ConsequenceClass
    """The class it ran under (the declared floor applied)."""
    attempts: int = 0
    """How many times the tool was called by this execution."""
    retryable: bool = False
    """True when executing the same call again later is allowed and may succeed (for
    ``needs_approval``: after a fresh approval, because the one given has expired)."""
    flagged: bool = False
    """A human should look: a write failed, or its outcome is unknown."""
