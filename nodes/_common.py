"""Plumbing every node shares: run context, recording decisions, calling the LLM."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig

from agentflow.decision import Decision, ModelRef
from agentflow.errors import ModelOutputError
from agentflow.models.llm import STAND_IN_KEY
from agentflow.recording import LlmCallRecord, NullRecorder, Recorder, RunContext
from agentflow.state import AgentState

__all__ = [
    "LlmAnswer",
    "NodeEnv",
    "ask_llm",
    "last_user_text",
    "llm_choice",
    "parse_choice",
    "request_text",
]


@dataclass(frozen=True)
class NodeEnv:
    """What every node needs besides its own model: where records go and LLM pricing."""

    recorder: Recorder = field(default_factory=NullRecorder)
    """Default recorder; a run may pass its own in ``config["configurable"]["recorder"]``."""
    graph: str = ""
    """Graph name stamped on every record."""
    cost_per_1k_tokens: float = 0.0
    """LLM price estimate for the ledger."""

    def context(self, config: RunnableConfig | None, node: str) -> RunContext:
        """The run context of the current invocation."""
        conf = (config or {}).get("configurable", {})
        return RunContext(
            thread_id=str(conf.get("thread_id", "")),
            run_id=str(conf.get("run_id", "")),
            graph=self.graph,
            node=node,
            trace_id=conf.get("trace_id"),
        )

    def recorder_for(self, config: RunnableConfig | None) -> Recorder:
        """The run's recorder if it brought one, else the default."""
        rec = (config or {}).get("configurable", {}).get("recorder")
        return rec if rec is not None else self.recorder

    def record(
        self, config: RunnableConfig | None, node: str, decisions: Iterable[Decision[Any]]
    ) -> list[dict[str, Any]]:
        """Send decisions to the recorder; return them as JSON for the state."""
        ctx = self.context(config, node)
        recorder = self.recorder_for(config)
        out = []
        for decision in decisions:
            recorder.decision(ctx, decision)
            out.append(decision.model_dump(mode="json"))
        return out


@dataclass(frozen=True)
class LlmAnswer:
    """Text and usage of one LLM call."""

    text: str
    """The answer's text content."""
    input_tokens: int
    """Prompt tokens (reported, or estimated at 4 characters per token)."""
    output_tokens: int
    """Completion tokens."""
    latency_ms: float
    """Wall time."""
    stand_in: dict[str, Any] | None = None
    """Set when the offline stand-in wrote this (``usable``, ``why``); None for a real LLM."""

    @property
    def tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.input_tokens + self.output_tokens


def _estimate(messages: Sequence[BaseMessage]) -> int:
    return sum(len(str(m.content)) for m in messages) // 4 + 1


def ask_llm(
    llm: BaseChatModel,
    system: str,
    user: str,
    *,
    purpose: str,
    env: NodeEnv,
    config: RunnableConfig | None,
    node: str,
    examples: Sequence[tuple[str, str]] = (),
) -> LlmAnswer:
    """Call the LLM once, record the call (tokens, latency, cost) and return its answer.

    ``examples`` are (user, answer) pairs put before ``user`` to show the answer wanted.
    """
    messages: list[BaseMessage] = [SystemMessage(system)]
    for shown, answered in examples:
        messages += [HumanMessage(shown), AIMessage(answered)]
    messages.append(HumanMessage(user))
    start = time.perf_counter()
    reply = llm.invoke(messages, config={"callbacks": (config or {}).get("callbacks")})
    latency = (time.perf_counter() - start) * 1000
    text = reply.content if isinstance(reply.content, str) else str(reply.content)
    usage = getattr(reply, "usage_metadata", None) or {}
    tokens_in = int(usage.get("input_tokens") or _estimate(messages))
    tokens_out = int(usage.get("output_tokens") or len(text) // 4 + 1)
    model = str(
        getattr(llm, "model_name", None) or getattr(llm, "model", None) or type(llm).__name__
    )
    env.recorder_for(config).llm_call(
        env.context(config, node),
        LlmCallRecord(
            purpose=purpose,
            model=model,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            latency_ms=latency,
            cost_estimate=(tokens_in + tokens_out) / 1000 * env.cost_per_1k_tokens,
        ),
    )
    stand_in = (getattr(reply, "response_metadata", None) or {}).get(STAND_IN_KEY)
    return LlmAnswer(text.strip(), tokens_in, tokens_out, latency, stand_in)


def parse_choice(text: str, choices: Sequence[str]) -> str:
    """The first of ``choices`` named in a free-text answer; ModelOutputError if none."""
    lowered = text.lower()
    hits = [
        (m.start(), c)
        for c in choices
        if (m := re.search(rf"(?<![a-z_]){re.escape(c.lower())}(?![a-z_])", lowered))
    ]
    if not hits:
        raise ModelOutputError(f"answer names none of {list(choices)}: {text[:120]!r}")
    return min(hits)[1]


def llm_choice(
    llm: BaseChatModel,
    *,
    role: str,
    system: str,
    user: str,
    choices: Sequence[str],
    input: Any,
    env: NodeEnv,
    config: RunnableConfig | None,
    usage: list[int] | None = None,
) -> Decision[str]:
    """The LLM's verdict when a small model escalates: one of ``choices``, as a Decision.

    The call is recorded like every LLM call (purpose ``escalation:<role>``); its tokens are
    appended to ``usage`` when given; an answer naming no choice raises ModelOutputError,
    which sends the role to its safe default.
    """
    answer = ask_llm(
        llm, system, user, purpose=f"escalation:{role}", env=env, config=config, node=role
    )
    if usage is not None:
        usage.append(answer.tokens)
    return Decision[str](
        role=role,
        value=parse_choice(answer.text, choices),
        confidence=1.0,
        source="llm",
        model=ModelRef(name=str(getattr(llm, "model_name", type(llm).__name__))),
        latency_ms=answer.latency_ms,
        rationale=answer.text[:300],
        input=input,
    )


def last_user_text(state: AgentState) -> str:
    """The latest human message's text."""
    for message in reversed(state.get("messages", [])):
        if isinstance(message, HumanMessage):
            return str(message.content)
    return ""


def request_text(state: AgentState) -> str:
    """The request this turn works on (``state["request"]``, else the latest user message)."""
    return state.get("request") or last_user_text(state)


def ai(text: str) -> AIMessage:
    """An assistant message."""
    return AIMessage(content=text)
