"""The respond node: the final answer to the user.

A route whose flow has a template answers without the LLM: the flow's result, its
question for a missing field, or a failure it recognises. Otherwise the LLM words the
answer from the request, what the tools returned and, for routes with documents, the
pruned context.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig

from agentflow.state import AgentState
from nodes._common import NodeEnv, ai, ask_llm, request_text
from nodes.context import DocumentIndex
from nodes.planner import Flow

__all__ = ["respond_node"]

_SYSTEM = (
    "You are a courteous customer-support agent. Answer the customer in a few sentences, "
    "using only the facts given. If something failed, say so plainly and say what happens next."
)


def respond_node(
    flows: dict[str, Flow],
    indexes: dict[str, DocumentIndex],
    llm: BaseChatModel | None,
    env: NodeEnv,
) -> Callable[[AgentState, RunnableConfig], dict[str, Any]]:
    """A node writing the final answer (templated or by the LLM) and closing the run."""

    def respond(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        route = state.get("route") or ""
        flow = flows.get(route)
        done = {"status": "done"} if state.get("status") != "failed" else {}
        if state.get("loop_verdict") == "rejected":
            # A human said no: tell the user plainly, no model needed (and none can misstate it).
            text = f"A colleague reviewed this request and did not approve it ({state.get('outcome')})."
            return {"messages": [ai(text)], **done}
        if state.get("loop_verdict") == "ask":
            # The planner's question for a missing field; the thread waits for the answer.
            return {"messages": [ai(state.get("outcome") or "")], **done}
        last = (state.get("observations") or [{}])[-1]
        template: str | None = None
        if flow is not None and last.get("status") in ("ok", "replayed") and flow.respond:
            template = flow.respond(state)
        elif flow is not None and last.get("status") == "failed" and flow.explain_failure:
            template = flow.explain_failure(state)
        if template is not None:
            return {"messages": [ai(template)], "outcome": template, **done}
        request = request_text(state)
        facts: dict[str, Any] = {"request": request}
        if state.get("observations"):
            facts["tool_results"] = state["observations"][-3:]
        if state.get("outcome"):
            facts["note"] = state["outcome"]
        update: dict[str, Any] = {}
        if route in indexes:
            context = indexes[route].prune(request)
            facts["documents"] = [{"title": d["title"], "text": d["text"]} for d in context]
            update["context"] = context
        if llm is None:
            text = "I have passed your request to a human colleague, who will get back to you."
            return {**update, "messages": [ai(text)], "outcome": text, **done}
        answer = ask_llm(
            llm,
            _SYSTEM,
            json.dumps(facts, default=str),
            purpose="respond",
            env=env,
            config=config,
            node="respond",
        )
        # A failed run keeps its reason as the outcome; the LLM's wording goes to the user.
        outcome = {} if state.get("status") == "failed" else {"outcome": answer.text}
        return {
            **update,
            "messages": [ai(answer.text)],
            **outcome,
            "llm_calls": 1,
            "llm_tokens": answer.tokens,
            **done,
        }

    return respond
