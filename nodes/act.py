"""The act node: hand the step at the cursor to the guarded executor.

The executor applies the consequence-class protocol (keys, retries, approval grants). An
irreversible or unknown call runs only if the store holds an approval grant for exactly
these arguments on this thread; ``assessment["approved"]`` in the state only routes the
graph, it is never evidence. A call whose approval expired before it began runs nothing
and is asked again (``loop_verdict="reapprove"``, a new approval request). A call that
could not run because the idempotency store is down, or because another worker
holds its key, raises: LangGraph keeps the checkpoint before this node, so resuming the
thread later runs the step again under the same derived key, and nothing runs twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.runnables import RunnableConfig

from agentflow.errors import KeyInFlightError, StoreUnavailableError
from agentflow.nodes._common import NodeEnv, turn_of
from agentflow.nodes.approval import approval_record, request_for
from agentflow.recording import RunContext
from agentflow.state import AgentState, Observation, Plan
from agentflow.tools.executor import GuardedExecutor, ToolCall

__all__ = ["act_node"]

_STOPS = {
    "needs_approval": "the call has no approval grant for exactly these arguments",
    "outcome_unknown": "a previous attempt's outcome is unknown; a human must check it",
    "refused": "the call was refused",
}


def _ask_again(
    state: AgentState,
    assessment: dict[str, Any],
    ctx: RunContext,
    env: NodeEnv,
    config: RunnableConfig,
    why: str | None,
) -> dict[str, Any]:
    """The approval expired before the call began: nothing ran; ask a human again."""
    renewed = {
        **assessment,
        "approved": False,
        "approved_by": None,
        "renewal": int(assessment.get("renewal") or 0) + 1,
        "edit_of": None,  # the edit's grant is spent by time: a human must answer again
    }
    request = request_for({**state, "assessment": renewed}, ctx.thread_id)
    record = approval_record(request, "requested", reason=f"asked again: {why}")
    env.recorder_for(config).approval(ctx, record)
    return {
        "assessment": renewed,
        "pending_approval": request.model_dump(mode="json"),
        "loop_verdict": "reapprove",
    }


def act_node(
    executor: GuardedExecutor, env: NodeEnv
) -> Callable[[AgentState, RunnableConfig], dict[str, Any]]:
    """A node executing the assessed step at the cursor."""

    def act(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        plan = Plan.model_validate(state["plan"])
        cursor = state.get("cursor", 0)
        assessment = state.get("assessment") or {}
        step = plan.steps[cursor]
        ctx = env.context(config, "act")
        result = executor.execute(
            ToolCall(
                tool=step.tool,
                args=assessment.get("args", step.args),
                step=cursor,
                turn=turn_of(state),
            ),
            assessment.get("class", "unknown"),
            thread_id=ctx.thread_id,
            run=ctx,
            recorder=env.recorder_for(config),
        )
        if result.status == "refused" and result.retryable:
            # The store is down: fail closed now, resume from this checkpoint later.
            raise StoreUnavailableError(result.error or "idempotency store unavailable")
        if result.status == "in_flight":
            raise KeyInFlightError(f"step {cursor} ({step.tool}) is running in another worker")
        if result.status == "needs_approval" and result.retryable:
            return _ask_again(state, assessment, ctx, env, config, result.error)
        observation = Observation(
            step=cursor,
            tool=step.tool,
            status=result.status,
            output=result.output,
            error=result.error,
        )
        update: dict[str, Any] = {
            "observations": [observation.model_dump(mode="json")],
            "iterations": 1,
        }
        if result.status in ("ok", "replayed"):
            update["cursor"] = cursor + 1
        elif result.status == "failed":
            update["errors"] = 1
        else:
            update["status"] = "failed"
            update["outcome"] = f"{step.tool}: {_STOPS.get(result.status, result.status)}" + (
                f" ({result.error})" if result.error else ""
            )
        return update

    return act
