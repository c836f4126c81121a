"""The approval gate: irreversible and unknown calls stop here until a human answers.

The node calls LangGraph ``interrupt()`` with an :class:`ApprovalRequest`: approval id,
thread, tool, arguments, the digest of (tool, arguments) and the consequence assessment.
The resume value is an :class:`ApprovalAnswer`: ``approve``, ``reject``, ``edit`` (new
arguments for the same tool) or ``respond`` (a message back to the agent), with the
approver's identity and the digest they saw. :func:`check_answer` refuses an answer for
another approval, a digest that is not the pending action's, or an edit that changes the
tool; callers check before resuming so a refused answer changes nothing, and the node
checks again (re-interrupting) in case an answer arrives by another path.

An accepted answer is not trusted as a value in graph state: :func:`accept_answer`
records it in the idempotency store as the approval's one answer (the first answer wins,
from any process) and, for ``approve`` and ``edit``, writes the approval *grant* for
exactly that action, which the executor consumes when the call begins. Whoever accepts
the answer must have authenticated the approver: :class:`agentflow.runtime.AgentRuntime`
(the CLI and the HTTP API) does it before resuming; under LangGraph Server this node does
it, taking the approver from the server's authenticated user
(``langgraph_auth_user``, which clients cannot set) and never from the answer's body.
A resume value that arrives any other way changes the state but writes no grant, so the
call it "approves" is refused where the effect happens.

An ``edit`` is an action of its own. Its arguments are validated against the tool's
schema and it gets its own digest; the ledger records the answer as ``edit`` with the
edited arguments and digest; the edited call goes back through the consequence node
(``loop_verdict="reassess"``; the declared floor still holds) and, if it again needs an
approval, it is a new request (its own id, ``edit_of`` naming the edited one) that the
editor's grant answers, recorded as ``approve`` with the reason "granted by the edit".
The grant was written for the edited digest when the edit was accepted, so the editor's
answer approves exactly what they wrote, and nothing else.

An approval expires (``ttl_s``); a call that finds its approval expired is asked again
as a new request (``renewal``), never run. Execution after approval goes through the
guarded executor under the step's derived key, so re-running this node on resume can
never repeat the effect.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
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
from agentflow.nodes._common import NodeEnv, request_text, turn_of
from agentflow.recording import ApprovalRecord
from agentflow.state import AgentState
from agentflow.tools.contract import ToolRegistry
from agentflow.tools.keys import action_digest, canonical_json, fingerprint
from agentflow.tools.store import AnswerResult, Grant, IdempotencyStore

__all__ = [
    "APPROVE_PERMISSION",
    "ApprovalAnswer",
    "ApprovalKind",
    "ApprovalRequest",
    "accept_answer",
    "action_digest",
    "approval_node",
    "approval_record",
    "authenticated_approver",
    "build_request",
    "check_answer",
    "needs_approval",
    "request_for",
]

ApprovalKind = Literal["approve", "reject", "edit", "respond"]
"""What an approver can answer."""

APPROVE_PERMISSION = "approve"
"""The LangGraph Server permission an authenticated user needs to answer an approval."""


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
    request: str = ""
    """The user's message this action answers (the turn's request, not the thread's first)."""
    renewal: int = 0
    """How many times this action was asked again because an approval of it expired."""
    edit_of: str | None = None
    """The approval whose ``edit`` answer wrote these arguments, if any."""


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


def accept_answer(
    store: IdempotencyStore,
    request: ApprovalRequest,
    answer: ApprovalAnswer,
    tools: ToolRegistry | None,
    *,
    ttl_s: float,
) -> AnswerResult:
    """Check ``answer`` and record it as the approval's one answer, granting approve/edit.

    The caller vouches that ``answer.approver`` is authenticated. The grant is for the
    action's canonical arguments (the edited ones for ``edit``) on the request's thread,
    valid ``ttl_s`` seconds. Raises :class:`ApprovalError` when the answer does not fit
    the request or another answer to it was accepted first (nothing changes then).
    """
    check_answer(request, answer, tools)
    digest: str | None = None
    if answer.decision in ("approve", "edit"):
        args = (answer.args if answer.decision == "edit" else request.args) or {}
        if tools is not None and request.tool in tools:
            digest = tools.get(request.tool).digest(args)
        else:
            digest = action_digest(request.tool, args)
    result = store.answer(
        approval_id=request.approval_id,
        thread_id=request.thread_id,
        answer_fp=_answer_fp(answer),
        decision=answer.decision,
        approver=answer.approver,
        grant_digest=digest,
        grant_ttl_s=ttl_s,
        edit=answer.decision == "edit",
    )
    if result.status == "answered":
        raise ApprovalError(
            f"approval {request.approval_id} was already answered ({result.decision} by "
            f"{result.approver}); this answer changes nothing",
            hint="reload the thread: it has moved on",
        )
    return result


def _answer_fp(answer: ApprovalAnswer) -> str:
    """What makes two answers the same answer (a LangGraph replay) or different ones."""
    return fingerprint(answer.model_dump(mode="json"))


def _check_accepted(
    store: IdempotencyStore, request: ApprovalRequest, answer: ApprovalAnswer
) -> None:
    """Refuse a resume value that is not the answer an authenticated path accepted."""
    accepted = store.answered(request.approval_id)
    if accepted is None or accepted[0] != _answer_fp(answer):
        raise ApprovalError(
            "this answer was not accepted for an authenticated approver",
            hint="answer through `agentflow resume`, the HTTP API, or LangGraph Server with "
            "an approver's token",
        )


def authenticated_approver(config: RunnableConfig | None) -> str | None:
    """The LangGraph Server user answering, if the server authenticated one allowed to approve."""
    conf: Mapping[str, Any] = (config or {}).get("configurable", {})
    user = conf.get("langgraph_auth_user")
    if user is None:
        return None
    permissions = list(
        conf.get("langgraph_auth_permissions") or getattr(user, "permissions", None) or ()
    )
    identity = getattr(user, "identity", None)
    if identity is None and isinstance(user, Mapping):
        identity = user.get("identity")
    if not identity or APPROVE_PERMISSION not in permissions:
        return None
    return str(identity)


def build_request(
    assessment: dict[str, Any],
    cursor: int,
    goal: str,
    thread_id: str,
    *,
    request: str = "",
    turn: str = "",
) -> ApprovalRequest:
    """The approval request for an assessed call (deterministic: same inputs, same id).

    The id names the thread, the turn (:mod:`agentflow.tools.keys`), the plan step, the action's
    digest and its renewal: the same refund asked for again in a later turn, or asked
    again after its approval expired, is a new question with a new id.
    """
    tool, args = assessment["tool"], assessment["args"]
    digest = action_digest(tool, args)
    renewal = int(assessment.get("renewal") or 0)
    material: dict[str, Any] = {"thread": thread_id, "step": cursor, "digest": digest}
    if turn:
        material["turn"] = turn
    if renewal:
        material["renewal"] = renewal
    seed = canonical_json(material)
    return ApprovalRequest(
        approval_id="apr_" + hashlib.sha256(seed.encode()).hexdigest()[:16],
        thread_id=thread_id,
        step=cursor,
        tool=tool,
        args=args,
        digest=digest,
        assessment={k: v for k, v in assessment.items() if k not in _NOT_SHOWN},
        goal=goal,
        request=request,
        renewal=renewal,
        edit_of=assessment.get("edit_of"),
    )


_NOT_SHOWN = ("tool", "args", "approved", "approved_by", "renewal", "edit_of")
"""Assessment keys that the request carries as fields of its own, or that mean nothing there."""


def request_for(state: AgentState, thread_id: str) -> ApprovalRequest:
    """The approval request for the assessed call in ``state`` (see :func:`build_request`)."""
    return build_request(
        state.get("assessment") or {},
        state.get("cursor", 0),
        (state.get("plan") or {}).get("goal", ""),
        thread_id,
        request=request_text(state),
        turn=turn_of(state),
    )


def _edited(state: AgentState, request: ApprovalRequest, args: dict[str, Any]) -> dict[str, Any]:
    """The update that makes the edited arguments the step's, to be assessed anew."""
    plan = dict(state.get("plan") or {})
    steps = [dict(step) for step in plan.get("steps") or ()]
    if request.step < len(steps):
        steps[request.step]["args"] = args
    plan["steps"] = steps
    assessment = {
        **(state.get("assessment") or {}),
        "args": args,
        "approved": True,  # routes a graph without a consequence node straight to act
        "edit_of": request.approval_id,
        "renewal": 0,
    }
    return {"plan": plan, "assessment": assessment, "loop_verdict": "reassess"}


def granted_note(request: ApprovalRequest) -> str:
    """The ledger's reason for an edited call approved by the edit itself."""
    return f"granted by the edit answered to {request.edit_of}"


def approval_record(
    request: ApprovalRequest,
    decision: str,
    approver: str | None = None,
    reason: str | None = None,
    **extra: Any,
) -> ApprovalRecord:
    """The ledger row for ``decision`` on ``request`` (``extra`` joins its payload)."""
    return ApprovalRecord(
        approval_id=request.approval_id,
        tool=request.tool,
        digest=request.digest,
        decision=decision,
        approver=approver,
        reason=reason,
        payload={**request.model_dump(mode="json"), **extra},
    )


def _refusal_reason(exc: Exception, raw: Any, server_user: str | None) -> str:
    claimed = raw.get("approver") if isinstance(raw, dict) and server_user is None else None
    note = f" (unauthenticated answer claiming to be {str(claimed)[:80]!r})" if claimed else ""
    return (str(exc)[:420] + note)[:500]


def _approved(
    state: AgentState, request: ApprovalRequest, decision: str, approver: str
) -> dict[str, Any]:
    """The state update every accepted answer makes (the approve case in full)."""
    answered = {
        "approval_id": request.approval_id,
        "decision": decision,
        "approver": approver,
        "digest": request.digest,
    }
    update: dict[str, Any] = {
        "pending_approval": None,
        "approvals": [answered],
        "loop_verdict": None,
    }
    if decision == "approve":
        assessment = {**(state.get("assessment") or {}), "approved": True, "approved_by": approver}
        update["assessment"] = assessment
    return update


def approval_node(
    tools: ToolRegistry,
    env: NodeEnv,
    store: Callable[[], IdempotencyStore] | None = None,
    *,
    ttl_s: float = 24 * 3600,
) -> Callable[[AgentState, RunnableConfig], dict[str, Any]]:
    """A node that waits for a valid human answer and applies it.

    ``store`` opens the idempotency store the executor uses; with it, an answer given
    through LangGraph Server by an authenticated user with the ``approve`` permission is
    accepted here (:func:`accept_answer`, grant valid ``ttl_s``), as that user.
    """

    def _granted_by_edit(request: ApprovalRequest) -> Grant | None:
        """The grant an approver's edit wrote for exactly this (edited) call, if unused."""
        # A renewal is asked because a grant expired: a human answers it, never the edit.
        if request.edit_of is None or request.renewal or store is None:
            return None
        grant = store().granted(request.thread_id, request.digest)
        if grant is None or not grant.edit or grant.used or grant.expires_at <= time.time():
            return None
        return grant if grant.approval_id == request.edit_of else None

    def gate(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        ctx = env.context(config, "approval")
        request = request_for(state, ctx.thread_id)
        recorder = env.recorder_for(config)
        granted = _granted_by_edit(request)
        if granted is not None:
            note = granted_note(request)
            recorder.approval(ctx, approval_record(request, "approve", granted.approver, note))
            return _approved(state, request, "approve", granted.approver)
        server_user = authenticated_approver(config)
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
                if server_user is not None and store is not None:
                    # The server says who is answering; the body's name is not evidence
                    # (and need not be given).
                    named = {**raw, "approver": server_user} if isinstance(raw, dict) else raw
                    answer = ApprovalAnswer.model_validate(named)
                    accept_answer(store(), request, answer, tools, ttl_s=ttl_s)
                else:
                    answer = ApprovalAnswer.model_validate(raw)
                    check_answer(request, answer, tools)
                    if store is not None:
                        _check_accepted(store(), request, answer)
                break
            except (ValidationError, ApprovalError) as exc:
                # Refused: the action stays pending and we wait for another answer.
                refused = ApprovalRecord(
                    approval_id=request.approval_id,
                    tool=request.tool,
                    digest=request.digest,
                    decision="refused",
                    # Only the server's authenticated user is a name; a body's is a claim.
                    approver=server_user,
                    reason=_refusal_reason(exc, raw, server_user),
                    payload=request.model_dump(mode="json"),
                )
        if answer.decision == "edit":
            spec = tools.get(request.tool)
            args = spec.validate_args(answer.args or {})
            payload = {"edited_args": args, "edited_digest": spec.digest(args)}
            recorder.approval(
                ctx, approval_record(request, "edit", answer.approver, answer.message, **payload)
            )
            edited = _edited(state, request, args)
            return {**_approved(state, request, "edit", answer.approver), **edited}
        recorder.approval(
            ctx, approval_record(request, answer.decision, answer.approver, answer.message)
        )
        update = _approved(state, request, answer.decision, answer.approver)
        if answer.decision == "reject":
            update.update(
                status="done",
                loop_verdict="rejected",
                outcome=f"{request.tool} was rejected by {answer.approver}"
                + (f": {answer.message}" if answer.message else ""),
            )
        elif answer.decision == "respond":
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
