"""The approval gate: irreversible and unknown calls stop here until a human answers.

The node calls LangGraph ``interrupt()`` with an :class:`ApprovalRequest`: approval id,
thread, tool, arguments, the digest of (tool, arguments) and the consequence assessment.
The resume value is an :class:`ApprovalAnswer`: ``approve``, ``reject``, ``edit`` (new
arguments for the same tool) or ``respond`` (a message back to the agent), with the
approver's identity and the digest they saw. :func:`check_answer` refuses an answer for
another approval, a digest that is not the pending action's, or an edit that changes the
tool; callers check before resuming so a refused answer changes nothing, and the node
checks again (re-interrupting) in case an answer arrives by another path.

Execution after approval goes through the guarded executor under the step's derived
key, so re-running this node on resume can never repeat the effect.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphInterrupt
from langgraph.types import interrupt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentflow.errors import (
    AgentflowError,
    ApprovalError,
    DigestMismatchError,
    UnknownApprovalError,
)
from agentflow.recording import ApprovalRecord
from agentflow.state import AgentState
from nodes._common import NodeEnv
from tools.contract import ToolRegistry
from tools.keys import canonical_json

__all__ = [
    "ApprovalAnswer",
    "ApprovalKind",
    "ApprovalRequest",
    "action_digest",
    "approval_node",
    "build_request",
    "check_answer",
    "needs_approval",
]

ApprovalKind = Literal["approve", "reject", "edit", "respond"]
"""What an approver can answer."""


class ApprovalRequest(BaseModel):
    """The interrupt payload shown to approvers."""

    model_config = ConfigDict(frozen=True)

    approval_id: str
    """Stable id of this request (the same on every re-run of the node)."""
    thread_id: str
    """Thread that waits."""
    step: int
    """Plan step the action belongs to."""
    tool: str
    """Tool to run."""
    args: dict[str, Any]
    """Arguments it would run with."""
    digest: str
    """sha256 of the canonical JSON of {tool, args}: what an approval approves."""
    assessment: dict[str, Any]
    """Consequence class, floor, confidence, source and rationale."""
    goal: str = ""
    """What the plan is for."""


class ApprovalAnswer(BaseModel):
    """A human's answer to an :class:`ApprovalRequest` (the ``Command(resume=...)`` value)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    approval_id: str
    """The request answered."""
    decision: ApprovalKind
    """approve, reject, edit or respond."""
    approver: str = Field(min_length=1)
    """Who answers."""
    digest: str
    """The digest of the action the approver saw."""
    args: dict[str, Any] | None = None
    """New arguments (``edit`` only)."""
    tool: str | None = None
    """Tool of the edited action; if given it must be the pending tool."""
    message: str | None = None
    """Message back to the agent (``respond``) or a note."""


def action_digest(tool: str, args: dict[str, Any]) -> str:
    """What an approval approves: the sha256 of canonical {tool, args}."""
    return hashlib.sha256(canonical_json({"tool": tool, "args": args}).encode()).hexdigest()


def needs_approval(assessment: dict[str, Any] | None) -> bool:
    """True when the assessed call may not run before a human approves it."""
    if not assessment:
        return False
    return assessment["class"] in ("irreversible", "unknown") and not assessment.get("approved")


def check_answer(
    request: ApprovalRequest, answer: ApprovalAnswer, tools: ToolRegistry | None = None
) -> None:
    """Raise an :class:`ApprovalError` if ``answer`` must not be applied to ``request``."""
    if answer.approval_id != request.approval_id:
        raise UnknownApprovalError(
            f"approval {answer.approval_id!r} is not the pending one on thread "
            f"{request.thread_id!r} (pending: {request.approval_id!r})"
        )
    if answer.digest != request.digest:
        raise DigestMismatchError(
            f"digest {answer.digest[:16]}… does not match the pending action "
            f"{request.tool} ({request.digest[:16]}…)"
        )
    if answer.decision == "edit":
        if answer.tool is not None and answer.tool != request.tool:
            raise ApprovalError(
                f"an edit may change arguments, not the tool ({request.tool} -> {answer.tool})",
                hint="reject this action and respond with what the agent should do instead",
            )
        if answer.args is None:
            raise ApprovalError("an edit needs new arguments", hint="pass --edit JSON")
        if tools is not None:
            try:
                tools.get(request.tool).validate_args(answer.args)
            except AgentflowError as exc:
                raise ApprovalError(f"edited arguments do not validate: {exc.message}") from exc


def build_request(
    assessment: dict[str, Any], cursor: int, goal: str, thread_id: str
) -> ApprovalRequest:
    """The approval request for an assessed call (deterministic: same inputs, same id)."""
    tool, args = assessment["tool"], assessment["args"]
    digest = action_digest(tool, args)
    seed = canonical_json({"thread": thread_id, "step": cursor, "digest": digest})
    return ApprovalRequest(
        approval_id="apr_" + hashlib.sha256(seed.encode()).hexdigest()[:16],
        thread_id=thread_id,
        step=cursor,
        tool=tool,
        args=args,
        digest=digest,
        assessment={k: v for k, v in assessment.items() if k not in ("tool", "args", "approved")},
        goal=goal,
    )


def approval_node(
    tools: ToolRegistry, env: NodeEnv
) -> Callable[[AgentState, RunnableConfig], dict[str, Any]]:
    """A node that waits for a valid human answer and applies it."""

    def gate(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        ctx = env.context(config, "approval")
        request = build_request(
            state["assessment"] or {},
            state.get("cursor", 0),
            (state.get("plan") or {}).get("goal", ""),
            ctx.thread_id,
        )
        recorder = env.recorder_for(config)
        refused: ApprovalRecord | None = None
        while True:
            try:
                raw = interrupt(request.model_dump(mode="json"))
            except GraphInterrupt:
                # LangGraph re-runs this node from the top on every resume, replaying the
                # earlier answers; only the newest one (the last consumed before waiting
                # again) is news, so each refusal reaches the ledger exactly once.
                if refused is not None:
                    recorder.approval(ctx, refused)
                raise
            try:
                answer = ApprovalAnswer.model_validate(raw)
                check_answer(request, answer, tools)
                break
            except (ValidationError, ApprovalError) as exc:
                # Refused: the action stays pending and we wait for another answer.
                refused = ApprovalRecord(
                    approval_id=request.approval_id,
                    tool=request.tool,
                    digest=request.digest,
                    decision="refused",
                    approver=(raw or {}).get("approver") if isinstance(raw, dict) else None,
                    reason=str(exc)[:500],
                    payload=request.model_dump(mode="json"),
                )
        recorder.approval(
            ctx,
            ApprovalRecord(
                approval_id=request.approval_id,
                tool=request.tool,
                digest=request.digest,
                decision=answer.decision,
                approver=answer.approver,
                reason=answer.message,
                payload=request.model_dump(mode="json"),
            ),
        )
        answered = {
            "approval_id": request.approval_id,
            "decision": answer.decision,
            "approver": answer.approver,
            "digest": request.digest,
        }
        update: dict[str, Any] = {"pending_approval": None, "approvals": [answered]}
        assessment = dict(state["assessment"] or {})
        if answer.decision in ("approve", "edit"):
            if answer.decision == "edit":
                assessment["args"] = tools.get(request.tool).validate_args(answer.args or {})
            assessment.update(approved=True, approved_by=answer.approver)
            update["assessment"] = assessment
        elif answer.decision == "reject":
            update.update(
                status="done",
                loop_verdict="rejected",
                outcome=f"{request.tool} was rejected by {answer.approver}"
                + (f": {answer.message}" if answer.message else ""),
            )
        else:
            update.update(
                loop_verdict="replan",
                observations=[
                    {
                        "step": request.step,
                        "tool": request.tool,
                        "status": "rejected",
                        "output": None,
                        "error": f"approver {answer.approver} says: {answer.message or ''}",
                    }
                ],
            )
        return update

    return gate
