"""Plumbing every node shares: run context, recording decisions, calling the LLM."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
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
    "turn_of",
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
        # Only an object the process made itself: a client's config (LangGraph Server
        # merges it into the run's) can carry any JSON under this key.
        return rec if isinstance(rec, Recorder) else self.recorder

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


def _record(
    llm: BaseChatModel,
    purpose: str,
    env: NodeEnv,
    config: RunnableConfig | None,
    node: str,
    tokens_in: int,
    tokens_out: int,
    latency_ms: float,
) -> None:
    model = _model_name(llm)
    env.recorder_for(config).llm_call(
        env.context(config, node),
        LlmCallRecord(
            purpose=purpose,
            model=model,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            latency_ms=latency_ms,
            cost_estimate=(tokens_in + tokens_out) / 1000 * env.cost_per_1k_tokens,
        ),
    )


def _record_reply(
    llm: BaseChatModel,
    reply: AIMessage,
    prompt: Sequence[str],
    *,
    purpose: str,
    env: NodeEnv,
    config: RunnableConfig | None,
    node: str,
    latency_ms: float,
) -> int:
    """Record one LLM call made outside :func:`ask_llm`; returns its tokens."""
    usage: dict[str, Any] = dict(reply.usage_metadata or {})
    tokens_in = int(usage.get("input_tokens") or sum(len(p) for p in prompt) // 4 + 1)
    tokens_out = int(usage.get("output_tokens") or len(str(reply.content)) // 4 + 1)
    _record(llm, purpose, env, config, node, tokens_in, tokens_out, latency_ms)
    return tokens_in + tokens_out


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
    _record(llm, purpose, env, config, node, tokens_in, tokens_out, latency)
    stand_in = (getattr(reply, "response_metadata", None) or {}).get(STAND_IN_KEY)
    return LlmAnswer(text.strip(), tokens_in, tokens_out, latency, stand_in)


def _mentions(text: str, choice: str) -> list[tuple[int, int]]:
    """Where ``choice`` is named in ``text`` as a word of its own (``retry_safe`` also as
    ``retry-safe`` or ``retry safe``), as (start, end) spans."""
    parts = [re.escape(p) for p in re.split(r"[_\s-]+", choice.lower()) if p]
    pattern = r"(?<![a-z0-9_-])" + r"[_\s-]+".join(parts) + r"(?![a-z0-9_-])"
    return [m.span() for m in re.finditer(pattern, text.lower())]


def parse_choice(
    text: str, choices: Sequence[str], *, rank: Callable[[str], int] | None = None
) -> str:
    """The choice a free-text answer names; ModelOutputError if it names none.

    A name inside a longer one (``safe`` in ``retry safe``) does not count. Without
    ``rank`` the first named choice wins; with it, the highest ranked one named anywhere
    (the consequence modeler ranks by severity, so "not safe; irreversible" is
    ``irreversible``: a verdict is never read as less severe than a class it names).
    """
    found = [(span, c) for c in choices for span in _mentions(text, c)]
    named = [
        (span, c)
        for span, c in found
        if not any(o[0] <= span[0] and span[1] <= o[1] and o != span for o, _ in found)
    ]
    if not named:
        raise ModelOutputError(f"answer names none of {list(choices)}: {text[:120]!r}")
    if rank is not None:
        return max(named, key=lambda hit: rank(hit[1]))[1]
    return min(named)[1]


def _verdict_schema(choices: Sequence[str]) -> dict[str, Any]:
    """The JSON schema an LLM verdict is asked in: one of ``choices`` and a confidence."""
    return {
        "title": "Verdict",
        "type": "object",
        "properties": {
            "choice": {"type": "string", "enum": list(choices)},
            "confidence": {"type": "number", "description": "probability you are right, 0-1"},
            "reason": {"type": "string", "description": "one short sentence"},
        },
        "required": ["choice", "confidence"],
    }


@dataclass(frozen=True)
class _Verdict:
    choice: str
    confidence: float | None
    reason: str
    raw: AIMessage


_FORMATS: dict[tuple[str, str, str], str] = {}
"""Which response format each OpenAI-compatible endpoint took (``json_schema``: OpenAI,
vLLM; ``json_object``: llama.cpp's server), so a refusal is paid for once."""


def _structured(
    llm: BaseChatModel, choices: Sequence[str], system: str, user: str
) -> _Verdict | None:
    """The verdict through the endpoint's structured output, or None where it has none.

    Only OpenAI-compatible clients are asked: other chat models (the offline stand-in,
    langchain-core's fakes) answer in free text.
    """
    if type(llm).__name__ not in ("ChatOpenAI", "AzureChatOpenAI"):
        return None
    schema = _verdict_schema(choices)
    endpoint = (type(llm).__name__, str(getattr(llm, "openai_api_base", "")), _model_name(llm))
    tried = [_FORMATS[endpoint]] if endpoint in _FORMATS else ["json_schema", "json_object"]
    for kind in tried:
        response_format: dict[str, Any] = (
            {"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema}}
            if kind == "json_schema"
            else {"type": "json_object", "schema": schema}
        )
        try:
            raw = llm.bind(response_format=response_format).invoke(
                [SystemMessage(system), HumanMessage(user)]
            )
        except Exception:  # this endpoint refuses that format: try the next, then free text
            continue
        _FORMATS[endpoint] = kind
        return _read_verdict(raw, choices) if isinstance(raw, AIMessage) else None
    return None


def _read_verdict(raw: AIMessage, choices: Sequence[str]) -> _Verdict | None:
    try:
        data = json.loads(str(raw.content))
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("choice") not in choices:
        return None
    reported = data.get("confidence")
    confidence = float(reported) if isinstance(reported, int | float) else None
    if confidence is not None and not 0.0 <= confidence <= 1.0:
        confidence = None  # a number outside 0-1 is no probability
    return _Verdict(
        str(data["choice"]),
        confidence,
        str(data.get("reason") or "")[:300],
        raw,
    )


def _model_name(llm: BaseChatModel) -> str:
    return str(
        getattr(llm, "model_name", None) or getattr(llm, "model", None) or type(llm).__name__
    )


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
    rank: Callable[[str], int] | None = None,
) -> Decision[str]:
    """The LLM's verdict when a small model escalates: one of ``choices``, as a Decision.

    Asked through structured output (a JSON schema with the choices as an enum and a
    confidence) where the model supports it; otherwise in free text, parsed by
    :func:`parse_choice` (with ``rank``, the highest ranked choice named wins). The
    confidence is the one the model reports, or 1.0 when it reports none; either way the
    decision is marked uncalibrated. The call is recorded like every LLM call (purpose
    ``escalation:<role>``); its tokens are appended to ``usage`` when given; an answer
    naming no choice raises ModelOutputError, which sends the role to its safe default.
    """
    model = ModelRef(name=_model_name(llm))
    start = time.perf_counter()
    verdict = _structured(llm, choices, system, user)
    if verdict is not None:
        latency = (time.perf_counter() - start) * 1000
        tokens = _record_reply(
            llm, verdict.raw, [system, user], purpose=f"escalation:{role}", env=env,
            config=config, node=role, latency_ms=latency,
        )  # fmt: skip
        if usage is not None:
            usage.append(tokens)
        return Decision[str](
            role=role,
            value=verdict.choice,
            confidence=1.0 if verdict.confidence is None else verdict.confidence,
            calibrated=False,
            source="llm",
            model=model,
            latency_ms=latency,
            rationale=verdict.reason or f"structured verdict {verdict.choice}",
            input=input,
        )
    answer = ask_llm(
        llm, system, user, purpose=f"escalation:{role}", env=env, config=config, node=role
    )
    if usage is not None:
        usage.append(answer.tokens)
    return Decision[str](
        role=role,
        value=parse_choice(answer.text, choices, rank=rank),
        confidence=1.0,
        calibrated=False,
        source="llm",
        model=model,
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


def turn_of(state: AgentState) -> str:
    """The id of the latest user message: the turn a plan answers (see :mod:`agentflow.tools.keys`)."""
    for message in reversed(state.get("messages", [])):
        if isinstance(message, HumanMessage):
            return str(message.id or "")
    return ""


def request_text(state: AgentState) -> str:
    """The request this turn works on (``state["request"]``, else the latest user message)."""
    return state.get("request") or last_user_text(state)


def ai(text: str) -> AIMessage:
    """An assistant message."""
    return AIMessage(content=text)
