"""The consequence modeler: is this tool call safe, retry-safe, retry-unsafe, irreversible?

An encoder head trained on labelled tool definitions from many domains (never on the
reference agent's own tools) judges a call from its name, description, input schema and
arguments. The head answers with the least severe class it can vouch for: the
calibrated probability that the call is no more severe than that class meets the
threshold (:meth:`ConsequenceModeler._bounded`). ``unknown`` or low confidence asks the
LLM; if the LLM fails, the call is ``unknown`` and needs a human. Whatever any model says, the tool's declared annotations
are a floor: :func:`agentflow.consequence.apply_floor` can raise the class, never lower it.
A call that moves money or cancels a booking has a floor of ``irreversible`` on top
(:mod:`agentflow.money`), whatever it is called and whatever it declares; a call too large
to read, or whose text addresses the classifier, is held at ``unknown``
(:mod:`agentflow.call_reading`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig

from agentflow.call_reading import read_call
from agentflow.consequence import (
    CONSEQUENCE_CLASSES,
    ConsequenceClass,
    ToolAnnotations,
    apply_floor,
    floor_from_annotations,
    severity,
)
from agentflow.decision import Decision, EscalationPolicy, resolve
from agentflow.models.encoder import Encoder
from agentflow.models.head import EncoderHead
from agentflow.money import money_floor, money_signals
from agentflow.nodes._common import NodeEnv, llm_choice
from agentflow.nodes.approval import approval_record, needs_approval, request_for
from agentflow.state import AgentState, Plan

__all__ = ["Assessment", "ConsequenceModeler", "consequence_node", "describe_call"]

_CLASS_GUIDE = (
    "Classify what running this tool call can do. Classes:\n"
    "- safe: only reads data\n"
    "- retry_safe: writes, but repeating it with the same idempotency key has no extra effect\n"
    "- retry_unsafe: writes; running it twice could double the effect\n"
    "- irreversible: cannot be undone (payments, refunds, sending messages, permanent deletion)\n"
    "- unknown: the definition does not say enough to tell\n"
    "Answer with the class name only."
)


_WHOLE_CALL = 300
"""Characters of JSON arguments read as they are; a longer call is read argument by argument.
(Reading every call argument by argument cost the shipped head 1.4 points of accuracy on
whole held-out domains and its confidence on the reference agent's cancellation.)"""


def describe_call(definition: dict[str, Any], args: dict[str, Any]) -> str:
    """The text the modeler reads: name, description, parameters, arguments and hints.

    Every argument is in it: a call whose JSON is short is read whole, as JSON (the form
    the head learned on); a longer one as each argument's name, type and a bounded
    excerpt of its value (:func:`agentflow.call_reading.read_call`), so padding one
    argument cannot push another out of view. Declared hints are part of the input (they lift held-out accuracy on
    unseen tools from 70% to 75%), and they are also enforced separately as a floor, so
    the model reading them can only make its proposal consistent with them, never weaken
    the floor. The money signals of the arguments (an amount, a currency, a payment
    method, a booking) are spelled out too.
    """
    reading = read_call(definition, args)
    whole = json.dumps(args, sort_keys=True, default=str)
    call = whole if len(whole) <= _WHOLE_CALL else reading.arguments
    schema = definition.get("inputSchema") or {}
    params = ", ".join(
        f"{name} ({spec.get('type', 'any')})"
        for name, spec in (schema.get("properties") or {}).items()
    )
    hints = definition.get("annotations") or {}
    text = (
        f"tool: {definition.get('name', '')}. {reading.description}. "
        f"parameters: {params}. call: {call}"
    )
    if hints:
        text += " hints: " + ", ".join(f"{k}={v}" for k, v in sorted(hints.items()))
    signals = money_signals(definition, args).tags()
    if signals:
        text += " signals: " + ", ".join(signals)
    return text


@dataclass(frozen=True)
class Assessment:
    """The consequence class a call runs under, and how it was reached."""

    cls: ConsequenceClass
    """Final class after the floor rule."""
    floor: ConsequenceClass | None
    """Class implied by the declared annotations (None: nothing declared)."""
    proposed: ConsequenceClass
    """What the deciding model (or rule) proposed before the floor."""
    decisions: tuple[Decision[Any], ...]
    """Every decision taken, including the floor rule when it changed the class."""
    llm_called: bool
    """Whether the LLM was asked."""
    money: tuple[str, ...] = ()
    """Why the money rule holds the call at ``irreversible`` (empty: it does not)."""
    unread: tuple[str, ...] = ()
    """Why the call is held at ``unknown`` as read (too large, text addressing the
    classifier: :mod:`agentflow.call_reading`); empty when it is not."""

    def to_state(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        """JSON for ``AgentState.assessment`` and the approval payload."""
        final = self.decisions[-1]
        return {
            "tool": tool,
            "args": args,
            "class": self.cls,
            "floor": self.floor,
            "proposed": self.proposed,
            "confidence": final.confidence,
            "source": final.source,
            "rationale": final.rationale,
            "approved": False,
        }


@dataclass(frozen=True)
class _Policy(EscalationPolicy):
    def trusts(self, decision: Decision[Any]) -> bool:
        # `unknown` is never acted on by itself: it is exactly what escalation is for.
        return decision.value != "unknown" and super().trusts(decision)


class ConsequenceModeler:
    """Assesses tool calls; see the module docstring for the rules."""

    def __init__(
        self,
        *,
        head: EncoderHead | None,
        encoder: Encoder | None,
        llm: BaseChatModel | None,
        threshold: float = 0.8,
    ) -> None:
        self.head, self.encoder, self.llm = head, encoder, llm
        # A call unlike any the head was trained on escalates however confident: the line
        # is fitted with whole domains held out, so 1% of calls of a known kind cross it
        # (FAR_QUANTILES says why not more).
        self.policy = _Policy(threshold=threshold)

    def assess(
        self,
        definition: dict[str, Any],
        args: dict[str, Any],
        *,
        env: NodeEnv | None = None,
        config: RunnableConfig | None = None,
        usage: list[int] | None = None,
    ) -> Assessment:
        """Classify one call of the tool ``definition`` (MCP-style) with ``args``."""
        env = env or NodeEnv()
        text = describe_call(definition, args)
        floor = floor_from_annotations(
            ToolAnnotations.model_validate(definition["annotations"])
            if definition.get("annotations")
            else None
        )
        signals = money_signals(definition, args)
        # A call too large to read, or whose text addresses the classifier, is held at
        # unknown; money at irreversible. Both sit above the declared floor and only raise.
        unread, money = read_call(definition, args).reasons, signals.reasons
        strict: ConsequenceClass | None = "unknown" if unread else money_floor(signals) or floor
        why = "reading floor" if unread else "money floor" if money else "declared floor"
        held_by = unread + money
        slm: Callable[[], Decision[str]] | None = None
        if self.head is not None and self.encoder is not None:
            head, encoder = self.head, self.encoder
            slm = lambda: self._bounded(head, encoder, text, strict, why)  # noqa: E731
        # Irreversible is already the strictest class that executes (and unknown waits for
        # a human): no model answer can change what happens next, so no LLM is asked.
        llm = (
            None
            if strict in ("irreversible", "unknown")
            else self._verdict(text, env, config, usage)
        )
        resolution = resolve("consequence_modeler", slm, llm, "unknown", self.policy)
        decisions: list[Decision[Any]] = list(resolution.trail)
        proposed: ConsequenceClass = resolution.final.value  # type: ignore[assignment]
        final_cls = apply_floor(strict, proposed)
        if final_cls != proposed or resolution.final.source == "rule" or held_by:
            decisions.append(
                self._rule(text, final_cls, floor, proposed, money, unread, resolution.llm_called)
            )
        return Assessment(
            final_cls, floor, proposed, tuple(decisions), resolution.llm_called, money, unread
        )

    @staticmethod
    def _rule(
        text: str,
        cls: ConsequenceClass,
        floor: ConsequenceClass | None,
        proposed: ConsequenceClass,
        money: tuple[str, ...],
        unread: tuple[str, ...],
        escalated: bool,
    ) -> Decision[str]:
        """The floor rules' own decision: what they made of the proposal, and why."""
        rationale = f"declared floor {floor}, model proposed {proposed}"
        if money:
            rationale = f"moves money ({'; '.join(money)}): at least irreversible; " + rationale
        if unread:
            rationale = f"{'; '.join(unread)}: held at unknown; " + rationale
        return Decision[str](
            role="consequence_modeler",
            value=cls,
            confidence=1.0,
            source="rule",
            latency_ms=0.0,
            escalated=escalated,
            input=text,
            rationale=rationale,
        )

    def _bounded(
        self,
        head: EncoderHead,
        encoder: Encoder,
        text: str,
        strict: ConsequenceClass | None,
        why: str,
    ) -> Decision[str]:
        """The least severe class the head can vouch for: no call is placed below it.

        What matters for safety is that a call is not run under a class *less* severe
        than its own. So the head's answer is the least severe class ``c`` (from the
        floor up) whose calibrated probability of the call being no more severe than
        ``c`` (``unknown`` counts as more severe) meets the threshold: the chance that
        the call belongs above ``c`` is then below ``1 - threshold``, the bound an
        argmax decision at the threshold gives. Unsure between ``retry_safe`` and
        ``retry_unsafe``, the call runs once under a key instead of asking the LLM.
        The search stops below ``irreversible`` (unless that is the floor): sending a
        call to a human because the head is unsure would only move the LLM's work onto
        people, so there only a confident ``irreversible`` is taken, else the LLM asks.
        """
        full = head.decide(text, encoder, top_k=len(head.labels))
        lowest = severity(strict) if strict is not None else 0
        ceiling = max(lowest, severity("retry_unsafe"))
        p_within = 0.0
        for cls in CONSEQUENCE_CLASSES:
            if cls == "unknown":
                break
            p_within += full.scores.get(cls, 0.0)
            if lowest <= severity(cls) <= ceiling and p_within >= self.policy.threshold:
                return full.model_copy(
                    update={
                        "value": cls,
                        "confidence": min(1.0, round(p_within, 4)),
                        "rationale": f"P(no more severe than {cls}) = {p_within:.3f}"
                        + (f" ({why} {strict})" if strict is not None else "")
                        + f"; model's top class {full.value}",
                    }
                )
        return full

    def _verdict(
        self, text: str, env: NodeEnv, config: RunnableConfig | None, usage: list[int] | None
    ) -> Callable[[Decision[str] | None], Decision[str]] | None:
        if self.llm is None:
            return None
        llm = self.llm

        def verdict(_small: Decision[str] | None) -> Decision[str]:
            return llm_choice(
                llm,
                role="consequence_modeler",
                system=_CLASS_GUIDE,
                user=text,
                choices=list(CONSEQUENCE_CLASSES),
                input=text,
                env=env,
                config=config,
                usage=usage,
                # "not safe; irreversible" is irreversible: the most severe class named wins.
                rank=lambda c: severity(c),  # type: ignore[arg-type]
            )

        return verdict


def consequence_node(
    modeler: ConsequenceModeler,
    definitions: Callable[[str], dict[str, Any] | None],
    env: NodeEnv,
    remember: Callable[[str, str, dict[str, Any], ConsequenceClass], None] | None = None,
) -> Callable[[AgentState, RunnableConfig], dict[str, Any]]:
    """A node assessing the plan step at the cursor; unknown tools fail the step.

    ``remember(thread_id, tool, args, class)`` keeps the verdict outside graph state,
    where the executor reads it (:meth:`agentflow.tools.store.IdempotencyStore.assess`), so a state
    write that lowers the class afterwards changes nothing.
    """

    def assess(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        plan = Plan.model_validate(state["plan"])
        step = plan.steps[state.get("cursor", 0)]
        definition = definitions(step.tool)
        if definition is None:
            return {
                "assessment": None,
                "status": "failed",
                "outcome": f"plan step uses unregistered tool {step.tool!r}",
            }
        usage: list[int] = []
        result = modeler.assess(definition, step.args, env=env, config=config, usage=usage)
        assessment = result.to_state(step.tool, step.args)
        reassessing = state.get("loop_verdict") == "reassess"
        if reassessing:
            # An approver's edit: the new request says which approval it came from.
            assessment["edit_of"] = (state.get("assessment") or {}).get("edit_of")
        ctx = env.context(config, "consequence_modeler")
        if remember is not None:
            remember(ctx.thread_id, step.tool, step.args, assessment["class"])
        pending = None
        if needs_approval(assessment):
            pending = request_for({**state, "assessment": assessment}, ctx.thread_id)
            # Recorded here, not in the gate: this node never re-runs on resume, the gate does.
            env.recorder_for(config).approval(ctx, approval_record(pending, "requested"))
        return {
            **({"loop_verdict": None} if reassessing else {}),
            "assessment": assessment,
            "pending_approval": pending.model_dump(mode="json") if pending else None,
            "decisions": env.record(config, "consequence_modeler", result.decisions),
            "llm_calls": int(result.llm_called),
            "llm_tokens": sum(usage),
        }

    return assess
