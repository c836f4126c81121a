"""The respond node: the final answer to the user.

A route whose flow has a template answers without the LLM: the flow's result, its
question for a missing field, or a failure it recognises. Otherwise the LLM words the
answer from the request, what the tools returned and, for routes with documents, the
pruned context.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig

from agentflow.nodes._answer import DATA_RULE, RESPOND_EXAMPLES, facts_prompt, present
from agentflow.nodes._common import NodeEnv, ai, ask_llm, request_text
from agentflow.nodes._requests import with_left_over
from agentflow.nodes.context import DocumentIndex
from agentflow.nodes.planner import Flow
from agentflow.state import AgentState

__all__ = ["SYSTEM", "respond_node"]

SYSTEM = (
    "You are a courteous support agent. Answer the request in one to three sentences, "
    "using only the facts given. If something failed, say so plainly and say what happens "
    "next. " + DATA_RULE
)
"""The instructions the LLM is given for this node."""


def respond_node(
    flows: dict[str, Flow],
    indexes: dict[str, DocumentIndex],
    llm: BaseChatModel | None,
    env: NodeEnv,
) -> Callable[[AgentState, RunnableConfig], dict[str, Any]]:
    """A node writing the final answer (templated or by the LLM) and closing the run."""

    def respond(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        return with_left_over(state, answer(state, config))

    def answer(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
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
        update: dict[str, Any] = {}
        documents: list[dict[str, Any]] = []
        if route in indexes:
            documents = indexes[route].prune(request)
            update["context"] = documents
        if llm is None:
            text = "I have passed your request to a human colleague, who will get back to you."
            return {**update, "messages": [ai(text)], "outcome": text, **done}
        prompt = facts_prompt(
            request,
            documents=documents,
            results=(state.get("observations") or [])[-3:],
            notes=[note] if (note := state.get("outcome")) else [],
        )
        reply = ask_llm(
            llm,
            SYSTEM,
            prompt,
            purpose="respond",
            env=env,
            config=config,
            node="respond",
            examples=RESPOND_EXAMPLES,
        )
        text = present(reply, request, documents)
        # A failed run keeps its reason as the outcome; the LLM's wording goes to the user.
        outcome = {} if state.get("status") == "failed" else {"outcome": text}
        return {
            **update,
            "messages": [ai(text)],
            **outcome,
            "llm_calls": 1,
            "llm_tokens": reply.tokens,
            **done,
        }

    return respond
