"""The escalation node: the loop stopped trusting itself, so the LLM takes over.

It reads the request, the plan and what happened, and writes the answer (or the hand-off
to a human) itself. The run ends ``done`` with the escalation visible in its decisions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig

from agentflow.state import AgentState
from nodes._common import NodeEnv, ai, ask_llm, request_text

__all__ = ["escalation_node"]

_SYSTEM = (
    "You take over a customer-support conversation an automated agent could not finish. "
    "Explain briefly what was done and what happens next; promise a human follow-up when "
    "nothing else can be done. Never claim an action succeeded unless the results say so."
)


def escalation_node(
    llm: BaseChatModel | None, env: NodeEnv
) -> Callable[[AgentState, RunnableConfig], dict[str, Any]]:
    """A node handing the conversation to the LLM."""

    def escalate(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        facts = {
            "request": request_text(state),
            "route": state.get("route"),
            "plan": state.get("plan"),
            "results": state.get("observations", [])[-3:],
            "why": state.get("outcome") or f"loop verdict {state.get('loop_verdict')}",
        }
        if llm is None:
            text = "I could not complete this automatically; a human colleague will follow up."
            return {"messages": [ai(text)], "outcome": text, "status": "done"}
        answer = ask_llm(
            llm,
            _SYSTEM,
            json.dumps(facts, default=str),
            purpose="escalation:loop",
            env=env,
            config=config,
            node="escalation",
        )
        return {
            "messages": [ai(answer.text)],
            "outcome": answer.text,
            "status": "done",
            "llm_calls": 1,
            "llm_tokens": answer.tokens,
        }

    return escalate
