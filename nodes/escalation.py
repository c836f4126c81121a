"""The escalation node: the loop stopped trusting itself, so the LLM takes over.

It reads the request, the plan and what happened, and writes the answer (or the hand-off
to a human) itself. The run ends ``done`` with the escalation visible in its decisions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig

from agentflow.nodes._answer import DATA_RULE, ESCALATION_EXAMPLES, facts_prompt, present
from agentflow.nodes._common import NodeEnv, ai, ask_llm, request_text
from agentflow.nodes._requests import with_left_over
from agentflow.state import AgentState

__all__ = ["SYSTEM", "escalation_node"]

SYSTEM = (
    "You take over a support conversation an automated agent could not finish. "
    "Explain briefly what was done and what happens next; promise a human follow-up when "
    "nothing else can be done. Never claim an action succeeded unless the results say so. "
    + DATA_RULE
)
"""The instructions the LLM is given for this node."""


def escalation_node(
    llm: BaseChatModel | None, env: NodeEnv
) -> Callable[[AgentState, RunnableConfig], dict[str, Any]]:
    """A node handing the conversation to the LLM."""

    def escalate(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        return with_left_over(state, hand_over(state, config))

    def hand_over(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        request = request_text(state)
        if llm is None:
            text = "I could not complete this automatically; a human colleague will follow up."
            return {"messages": [ai(text)], "outcome": text, "status": "done"}
        why = state.get("outcome") or f"loop verdict {state.get('loop_verdict')}"
        plan = (state.get("plan") or {}).get("goal")
        notes = [f"The automated agent stopped: {why.rstrip('.')}."]
        notes += [f"Plan: {plan.rstrip('.')}."] if plan else []
        answer = ask_llm(
            llm,
            SYSTEM,
            facts_prompt(request, results=state.get("observations", [])[-3:], notes=notes),
            purpose="escalation:loop",
            env=env,
            config=config,
            node="escalation",
            examples=ESCALATION_EXAMPLES,
        )
        text = present(answer, request)
        return {
            "messages": [ai(text)],
            "outcome": text,
            "status": "done",
            "llm_calls": 1,
            "llm_tokens": answer.tokens,
        }

    return escalate
