"""The decision contract: what every small-model (and escalated) call returns.

A :class:`Decision` carries the value, a confidence in [0, 1], who decided, with which
model artifact, how long it took and whether it was escalated. :func:`resolve` applies
the escalation policy of DESIGN.md: below the role's threshold, on an uncalibrated
model, or on invalid output, ask the LLM; if the LLM fails too, take the role's safe
default. Every decision taken on the way is returned, so callers can record them all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from agentflow.errors import AgentflowError

__all__ = [
    "Decision",
    "EscalationPolicy",
    "ModelRef",
    "Resolution",
    "Role",
    "Source",
    "resolve",
]

T = TypeVar("T")

Source = Literal["slm:encoder", "slm:gguf", "slm:remote", "llm", "rule"]
"""Who produced a decision."""

Role = Literal["router", "loop_evaluator", "consequence_modeler", "extractor", "planner"]
"""The control-flow role a decision was taken for."""


class ModelRef(BaseModel):
    """Identity of the artifact that decided: a name and the sha256 of its file."""

    model_config = ConfigDict(frozen=True)

    name: str
    """Human-readable model name (file name, head name, endpoint model)."""
    sha256: str | None = None
    """sha256 of the artifact; None for remote models whose weights we cannot hash."""


class Decision(BaseModel, Generic[T]):
    """One control-flow decision and everything needed to audit it later."""

    model_config = ConfigDict(frozen=True)

    role: str
    """Which role decided (router, loop_evaluator, ...)."""
    value: T
    """The decision itself: a route name, a loop verdict, a consequence class, an object."""
    confidence: float = Field(ge=0.0, le=1.0)
    """Probability that ``value`` is right; only trusted when ``calibrated``."""
    source: Source
    """Who decided: an encoder head, a local GGUF, a remote SLM, the LLM, or a rule."""
    model: ModelRef | None = None
    """The artifact that decided (None for rules)."""
    latency_ms: float = Field(ge=0.0)
    """Wall time of the decision itself."""
    escalated: bool = False
    """True when this decision was taken because a smaller one was not trusted."""
    calibrated: bool = True
    """Whether ``confidence`` comes from a model calibrated on labelled examples."""
    far: bool = False
    """The input is farther from the model's training examples than nearly all of them
    were (:meth:`~agentflow.models.head.EncoderHead.is_far`): confidence says little."""
    rationale: str | None = None
    """Why, in words, when the decider gives one (LLM verdicts, rules, failures)."""
    evidence: str | None = None
    """What kind of evidence an extracted field rests on, the unit its confidence is
    calibrated per (:class:`~agentflow.extraction.FieldCalibration`)."""
    scores: dict[str, float] = Field(default_factory=dict)
    """Probabilities of the other candidate values, when the decider has them; for a
    schema extraction, each field's own probability, by field name."""
    input: Any = None
    """The input that produced the decision (text or JSON), for the ledger and retraining."""


@dataclass(frozen=True)
class EscalationPolicy:
    """When a small model's decision is not trusted and the LLM is asked instead."""

    threshold: float = 0.8
    """Minimum calibrated confidence to act on a small-model decision."""
    require_calibrated: bool = True
    """Escalate decisions whose confidence was never calibrated, whatever their value."""
    escalate_far: bool = True
    """Escalate decisions on inputs far from the training examples (``Decision.far``),
    however confident: an unseen kind of request is not one the small model knows."""

    def trusts(self, decision: Decision[Any]) -> bool:
        """True when ``decision`` may be acted on without the LLM."""
        if self.require_calibrated and not decision.calibrated:
            return False
        if self.escalate_far and decision.far:
            return False
        return decision.confidence >= self.threshold


@dataclass(frozen=True)
class Resolution(Generic[T]):
    """The decision acted on, plus every decision taken to reach it (oldest first)."""

    final: Decision[T]
    """The decision the graph acts on."""
    trail: tuple[Decision[Any], ...]
    """All decisions, including the untrusted small-model one and the LLM verdict."""
    llm_called: bool
    """Whether the LLM was asked (counts towards the run's LLM budget)."""
    error: str | None = None
    """Why the small model or the LLM failed, if one did."""


def resolve(
    role: str,
    slm: Callable[[], Decision[T]] | None,
    llm: Callable[[Decision[T] | None], Decision[T]] | None,
    safe_default: T,
    policy: EscalationPolicy,
) -> Resolution[T]:
    """Run the escalation policy for one decision.

    ``slm`` is the small model (None when the role has none), ``llm`` receives the
    untrusted small-model decision (or None) and returns its own verdict; when either
    raises, the failure is recorded and the next step is taken. ``safe_default`` is the
    role's fail-safe value (DESIGN.md: router -> the LLM route, loop evaluator -> stop
    and escalate, consequence modeler -> require approval).
    """
    trail: list[Decision[Any]] = []
    errors: list[str] = []
    small: Decision[T] | None = None
    if slm is not None:
        try:
            small = slm()
            trail.append(small)
            if policy.trusts(small):
                return Resolution(final=small, trail=tuple(trail), llm_called=False)
        except (AgentflowError, ValueError) as exc:
            # Malformed model output is an expected event, not a crash: escalate.
            errors.append(f"{role} small model failed: {exc}")
    if llm is not None:
        start = time.perf_counter()
        try:
            verdict = llm(small).model_copy(update={"escalated": True})
            trail.append(verdict)
            return Resolution(
                final=verdict,
                trail=tuple(trail),
                llm_called=True,
                error="; ".join(errors) or None,
            )
        except Exception as exc:  # the LLM is remote and fallible; any failure -> safe default
            errors.append(f"{role} LLM failed: {type(exc).__name__}: {exc}")
        llm_ms = (time.perf_counter() - start) * 1000
    else:
        llm_ms = 0.0
        errors.append(f"{role}: no LLM configured for escalation")
    fallback = Decision[Any](
        role=role,
        value=safe_default,
        confidence=1.0,
        source="rule",
        latency_ms=llm_ms,
        escalated=True,
        rationale="safe default: " + "; ".join(errors),
        input=small.input if small is not None else None,
    )
    trail.append(fallback)
    return Resolution(
        final=fallback,  # type: ignore[arg-type]
        trail=tuple(trail),
        llm_called=llm is not None,
        error="; ".join(errors),
    )
