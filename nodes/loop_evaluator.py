"""The loop evaluator: after each step, continue, replan, done or escalate?

Hard guards come first and need no model (iteration cap, error budget, token budget).
Then an encoder head reads the goal and the latest observation. Low confidence asks the
LLM; if the LLM fails, the loop stops and escalates (the role's safe default). The LLM is
therefore called only for plans, replans and escalations.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig

from agentflow.decision import Decision, EscalationPolicy, resolve
from agentflow.inputs import head_input
from agentflow.models.encoder import Encoder
from agentflow.models.head import EncoderHead
from agentflow.nodes._common import NodeEnv, llm_choice
from agentflow.state import AgentState, Plan

__all__ = [
    "LoopEvaluator",
    "LoopGuards",
    "LoopVerdict",
    "describe_step",
    "echo_share",
    "format_call",
    "loop_node",
]

LoopVerdict = Literal["continue", "replan", "done", "escalate"]
"""What the loop does next."""

_VERDICTS: tuple[str, ...] = get_args(LoopVerdict)
_LOOP_GUIDE = (
    "An agent just executed a step. Decide: continue (step worked, more steps remain), done "
    "(goal met), replan (step failed but the goal is reachable another way), escalate (a human "
    "is needed). Answer with one word."
)


@dataclass(frozen=True)
class LoopGuards:
    """Limits checked before any model is asked."""

    max_iterations: int = 8
    """Steps executed in one thread before the loop escalates."""
    error_budget: int = 2
    """Failed steps tolerated before the loop escalates."""
    token_budget: int = 20_000
    """LLM tokens one thread may spend before the loop escalates."""


def describe_step(observation: str) -> str:
    """The text the evaluator's encoder reads: the latest observation.

    Embedding the goal and step along with it measurably hurt held-out accuracy (the
    observation says whether things went well); progress goes in as numbers instead,
    see :func:`loop_features`.
    """
    return observation[:600]


_CALL_VALUE = re.compile(
    r"=\s*'((?:[^'\\]|\\.)*)'|=\s*\"((?:[^\"\\]|\\.)*)\"|=\s*(-?\d+(?:\.\d+)?)"
)


def echo_share(call: str, observation: str) -> float:
    """Share of the call's argument values (3+ characters) that the observation repeats.

    A write that answers with the values it was asked to set most likely did what was
    asked; the encoder reads the observation alone and cannot compare the two.
    ``call`` is written as :func:`format_call` writes it, which is also how the training
    examples store their steps.
    """
    values = [v for groups in _CALL_VALUE.findall(call) for v in groups if len(v) >= 3]
    if not values:
        return 0.0
    seen = observation.lower()
    return sum(v.lower() in seen for v in values) / len(values)


def loop_features(steps_done: int, steps_planned: int, echo: float = 0.0) -> list[float]:
    """Side-features the encoder cannot read from text: how far through the plan we are,
    and how much of the call the observation echoes (:func:`echo_share`)."""
    planned = max(steps_planned, 1)
    return [
        steps_done / planned,
        3.0 * float(steps_done >= planned),
        3.0 * float(steps_done > planned),
        echo,
    ]


def format_call(tool: str, args: dict[str, Any]) -> str:
    """A call as ``tool(key='value', ...)``, as the training examples write it."""
    return f"{tool}(" + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")"


class LoopEvaluator:
    """Decides what the loop does after a step."""

    def __init__(
        self,
        *,
        head: EncoderHead | None,
        encoder: Encoder | None,
        llm: BaseChatModel | None,
        guards: LoopGuards = LoopGuards(),
        threshold: float = 0.8,
    ) -> None:
        self.head, self.encoder, self.llm, self.guards = head, encoder, llm, guards
        # An observation unlike any the head was trained on escalates however confident:
        # the line is fitted with whole runs (goals) held out, so 5% of observations of a
        # known kind cross it; on 120 recorded runs of other domains, 4 of 1,189 did.
        self.policy = EscalationPolicy(threshold=threshold)

    def guard(self, state: AgentState) -> Decision[str] | None:
        """A rule decision when a hard limit is hit, else None."""
        checks = (
            (state.get("iterations", 0) >= self.guards.max_iterations, "iteration cap reached"),
            (state.get("errors", 0) > self.guards.error_budget, "error budget spent"),
            (state.get("llm_tokens", 0) > self.guards.token_budget, "token budget spent"),
        )
        for hit, why in checks:
            if hit:
                return Decision[str](
                    role="loop_evaluator",
                    value="escalate",
                    confidence=1.0,
                    source="rule",
                    latency_ms=0.0,
                    rationale=why,
                )
        return None

    def evaluate(
        self, state: AgentState, env: NodeEnv, config: RunnableConfig | None, usage: list[int]
    ) -> tuple[list[Decision[Any]], bool]:
        """Decisions taken (last one is acted on) and whether the LLM was called."""
        guard = self.guard(state)
        if guard is not None:
            return [guard], False
        plan = Plan.model_validate(state["plan"])
        last = state["observations"][-1]
        step = plan.steps[last["step"]]
        observation = (
            json.dumps(last.get("output"), default=str)
            if last["status"] in ("ok", "replayed")
            else f"error: {last.get('error')}"
        )
        text = describe_step(observation)
        extra = loop_features(
            last["step"] + 1,
            len(plan.steps),
            echo_share(format_call(step.tool, step.args), observation),
        )
        slm: Callable[[], Decision[str]] | None = None
        if self.head is not None and self.encoder is not None:
            head, encoder = self.head, self.encoder

            def decide() -> Decision[str]:
                # The ledger keeps the features with the text: retraining this head from
                # labelled decisions needs both (agentflow.inputs).
                found = head.decide(text, encoder, extra=extra)
                return found.model_copy(update={"input": head_input(text, extra)})

            slm = decide
        context = (
            f"goal: {plan.goal}\nstep: {format_call(step.tool, step.args)}\n"
            f"observation: {text}\nplanned steps left: {len(plan.steps) - last['step'] - 1}"
        )
        resolution = resolve(
            "loop_evaluator",
            slm,
            self._verdict(context, env, config, usage),
            "escalate",
            self.policy,
        )
        return list(resolution.trail), resolution.llm_called

    def _verdict(
        self, text: str, env: NodeEnv, config: RunnableConfig | None, usage: list[int]
    ) -> Callable[[Decision[str] | None], Decision[str]] | None:
        if self.llm is None:
            return None
        llm = self.llm

        def verdict(_small: Decision[str] | None) -> Decision[str]:
            return llm_choice(
                llm,
                role="loop_evaluator",
                system=_LOOP_GUIDE,
                user=text,
                choices=_VERDICTS,
                input=text,
                env=env,
                config=config,
                usage=usage,
            )

        return verdict


def loop_node(
    evaluator: LoopEvaluator, env: NodeEnv
) -> Callable[[AgentState, RunnableConfig], dict[str, Any]]:
    """A LangGraph node recording the evaluator's verdict in ``loop_verdict``."""

    def evaluate(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        usage: list[int] = []
        decisions, llm_called = evaluator.evaluate(state, env, config, usage)
        verdict = decisions[-1].value
        plan = Plan.model_validate(state["plan"])
        succeeded = state["observations"][-1]["status"] in ("ok", "replayed")
        if verdict == "continue" and not succeeded:
            # Continuing past a failed step would re-run it or skip it; neither is sound.
            verdict = "replan"
        elif verdict == "continue" and state.get("cursor", 0) >= len(plan.steps):
            # Nothing left to continue with: the plan finished and its last step worked.
            verdict = "done"
        return {
            "loop_verdict": verdict,
            "decisions": env.record(config, "loop_evaluator", decisions),
            "llm_calls": int(llm_called),
            "llm_tokens": sum(usage),
        }

    return evaluate
