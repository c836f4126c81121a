"""The planner: turn a request into a typed plan of tool calls.

Two strategies. A route with a :class:`Flow` plans without the LLM: an extractor pulls
the fields the flow needs (rules or the generative SLM's schema extraction), and the
flow's template turns them into steps. When the request lacks a field the template needs
(:class:`MissingFields`), a flow that knows how to ask puts the question to the user and
the thread waits for the answer; otherwise the run escalates. An extracted field is a
decision like the others: below the threshold (see :func:`unsure_fields`) the LLM is
asked for it, and if it cannot settle it the flow asks the user to confirm in plain
words (:attr:`Flow.confirm`), so a write never runs on a field nobody was confident
about. Every other plan, and every
replan, comes from the LLM as JSON, validated against the registered tools' input
schemas; an invalid plan is retried once with the validation error, then the run escalates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from pydantic import ValidationError

from agentflow.decision import Decision, EscalationPolicy
from agentflow.errors import AgentflowError, DataError
from agentflow.nodes._answer import DATA_RULE, tool_data
from agentflow.nodes._common import NodeEnv, ask_llm, request_text
from agentflow.state import AgentState, Plan
from agentflow.tools.contract import ToolRegistry

__all__ = [
    "Extractor",
    "Flow",
    "MissingFields",
    "PlanError",
    "parse_plan",
    "planner_node",
    "unsure_fields",
]


class PlanError(AgentflowError):
    """The LLM's plan is not valid JSON or names tools/arguments that do not validate."""

    default_hint = "the run escalates; improve the planner prompt or the LLM"


class MissingFields(DataError):
    """The request does not say everything the flow's plan needs."""

    default_hint = "the flow asks the user when it can, else the run escalates to the LLM"

    def __init__(self, fields: list[str]) -> None:
        super().__init__(f"could not find {', '.join(fields)} in the request")
        self.fields = fields


class Extractor(Protocol):
    """Pulls a flow's fields out of a request; returns them and the decisions taken."""

    def __call__(
        self, text: str, customer: dict[str, Any]
    ) -> tuple[dict[str, Any], list[Decision[Any]]]:
        """Extract fields from ``text`` for ``customer``."""
        ...


@dataclass(frozen=True)
class Flow:
    """A route handled by a fixed tool sequence: no LLM unless something goes wrong."""

    plan: Callable[[str, dict[str, Any], dict[str, Any]], Plan]
    """(request text, customer, extracted fields) -> plan."""
    extract: Extractor | None = None
    """How the fields are extracted (None: the plan needs no fields)."""
    respond: Callable[[AgentState], str] | None = None
    """Templated answer once the plan is done (None: the LLM words the answer)."""
    ask: Callable[[list[str], dict[str, Any]], str] | None = None
    """(missing fields, fields found so far) -> the question for the user (None: a request
    with missing fields escalates to the LLM)."""
    explain_failure: Callable[[AgentState], str | None] | None = None
    """Templated answer when a step of the flow failed, e.g. a business rule said no; it
    returns None for failures it does not recognise, which the LLM then words."""
    confirm: Callable[[list[str], dict[str, Any]], str] | None = None
    """(unsure fields, fields found) -> a plain-words question asking the user to confirm
    them. Used when an extracted field's confidence is below the threshold and the LLM
    cannot settle it (None: such a request escalates; a write never runs on it)."""


def parse_plan(text: str, tools: ToolRegistry, goal: str) -> Plan:
    """Parse and validate an LLM plan (JSON object, possibly inside a code fence)."""
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if match is None:
        raise PlanError(f"no JSON object in the plan: {text[:200]!r}")
    try:
        raw = json.loads(match.group(0))
        plan = Plan.model_validate({"goal": raw.get("goal") or goal, "steps": raw.get("steps", [])})
    except (json.JSONDecodeError, ValidationError, AttributeError) as exc:
        raise PlanError(f"plan is not valid: {exc}") from exc
    if not plan.steps:
        raise PlanError("plan has no steps")
    try:
        steps = [
            step.model_copy(update={"args": tools.get(step.tool).validate_args(step.args)})
            for step in plan.steps
        ]
    except AgentflowError as exc:
        raise PlanError(f"plan step does not validate: {exc.message}") from exc
    return plan.model_copy(update={"steps": steps})


_REPLAN_RESULT_CHARS = 1000
"""Characters of each earlier tool result a replan shows the LLM."""

_FIELDS_PROMPT = (
    "A small model extracted fields from a customer request but is unsure of some. For each "
    "unsure field give the value the request states, or null when it does not say. Answer "
    'with JSON only, e.g. {"field": "value"}.'
)


def unsure_fields(
    decisions: list[Decision[Any]], extracted: dict[str, Any], policy: EscalationPolicy
) -> list[str]:
    """Extracted fields (with a value) whose latest one-field decision ``policy`` does not
    trust; decisions about several fields at once are the model's raw reading, not final."""
    latest: dict[str, Decision[Any]] = {}
    for d in decisions:
        if isinstance(d.value, dict) and len(d.value) == 1:
            latest[next(iter(d.value))] = d
    return [
        name
        for name, d in latest.items()
        if extracted.get(name) is not None and not policy.trusts(d)
    ]


def _confirmed(fields: dict[str, Any], text: str) -> Decision[Any]:
    return Decision[Any](
        role="extractor",
        value=fields,
        confidence=1.0,
        source="rule",
        latency_ms=0.0,
        rationale="the user confirmed these fields",
        input=text,
    )


def _plan_prompt(tools: ToolRegistry) -> str:
    return (
        "You plan tool calls for a support agent. Tools (JSON Schema inputs):\n"
        + "\n".join(json.dumps(d, sort_keys=True) for d in tools.definitions())
        + '\nAnswer with JSON only: {"goal": "...", "steps": [{"tool": "...", "args": {...}, '
        '"why": "..."}]}\n' + DATA_RULE
    )


def planner_node(
    flows: dict[str, Flow],
    tools: ToolRegistry,
    llm: BaseChatModel | None,
    env: NodeEnv,
    *,
    attempts: int = 2,
    policy: EscalationPolicy | None = None,
) -> Callable[[AgentState, RunnableConfig], dict[str, Any]]:
    """A node that plans (or replans) the current request.

    ``policy`` says when an extracted field is trusted (default: calibrated confidence of
    0.8 or more). An unsure field is asked of the LLM, else confirmed with the user
    (:attr:`Flow.confirm`), else the request escalates: no plan is built on it.
    """
    trust = policy or EscalationPolicy(escalate_far=False)

    def plan(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        text = request_text(state)
        route = state.get("route") or ""
        flow = flows.get(route)
        replanning = state.get("loop_verdict") == "replan"
        if flow is not None and not replanning:
            decisions: list[Decision[Any]] = []
            extracted: dict[str, Any] = {}
            spent: dict[str, int] = {}
            if state.get("confirmed"):
                extracted = dict(state["confirmed"] or {})
                decisions = [_confirmed(extracted, text)]
            elif flow.extract is not None:
                extracted, decisions = flow.extract(text, state.get("customer", {}))
                unsure = unsure_fields(decisions, extracted, trust)
                if unsure:
                    settled, spent = _settle(unsure, text, extracted, config)
                    decisions += settled
                    for d in settled:
                        extracted.update(d.value)
                    unsure = [f for f in unsure if not any(f in d.value for d in settled)]
                    if unsure:
                        asked = _confirm(route, flow, unsure, text, extracted, decisions, config)
                        return {**asked, **spent}
            try:
                new_plan = flow.plan(text, state.get("customer", {}), extracted)
                return {
                    **spent,
                    "plan": new_plan.model_dump(mode="json"),
                    "cursor": 0,
                    "extracted": extracted,
                    "decisions": env.record(config, "planner", decisions),
                    "loop_verdict": None,
                }
            except MissingFields as exc:
                if flow.ask is None:
                    return _escalate(route, exc, extracted, decisions, config)
                return {
                    **spent,
                    "extracted": extracted,
                    "decisions": env.record(config, "planner", decisions),
                    "loop_verdict": "ask",
                    "outcome": flow.ask(exc.fields, extracted),
                    "awaiting": {"request": text, "missing": exc.fields},
                }
            except AgentflowError as exc:
                return _escalate(route, exc, extracted, decisions, config)
        return _llm_plan(state, text, config, replanning)

    def _settle(
        unsure: list[str], text: str, extracted: dict[str, Any], config: RunnableConfig
    ) -> tuple[list[Decision[Any]], dict[str, int]]:
        """The LLM's value for each unsure field it names (none without an LLM), and the
        LLM calls and tokens that took."""
        if llm is None:
            return [], {}
        answer = ask_llm(
            llm,
            _FIELDS_PROMPT,
            f"Request: {text}\nFields found: {json.dumps(extracted, default=str)}\n"
            f"Unsure: {', '.join(unsure)}",
            purpose="extract",
            env=env,
            config=config,
            node="planner",
        )
        match = re.search(r"\{.*\}", answer.text, re.DOTALL)
        try:
            values = json.loads(match.group(0)) if match else {}
        except json.JSONDecodeError:
            values = {}
        if not isinstance(values, dict):
            values = {}
        settled = [
            Decision[Any](
                role="extractor",
                value={name: values[name]},
                confidence=1.0,
                source="llm",
                latency_ms=answer.latency_ms,
                escalated=True,
                rationale="the small extractor was unsure",
                input=text,
            )
            for name in unsure
            if values.get(name) is not None
        ]
        return settled, {"llm_calls": 1, "llm_tokens": answer.tokens}

    def _confirm(
        route: str,
        flow: Flow,
        unsure: list[str],
        text: str,
        extracted: dict[str, Any],
        decisions: list[Decision[Any]],
        config: RunnableConfig,
    ) -> dict[str, Any]:
        if flow.confirm is None:
            exc = AgentflowError(f"nobody was confident about {', '.join(unsure)}")
            return _escalate(route, exc, extracted, decisions, config)
        return {
            "extracted": extracted,
            "decisions": env.record(config, "planner", decisions),
            "loop_verdict": "ask",
            "outcome": flow.confirm(unsure, extracted),
            "awaiting": {"request": text, "confirm": unsure, "route": route, "fields": extracted},
        }

    def _escalate(
        route: str,
        exc: AgentflowError,
        extracted: dict[str, Any],
        decisions: list[Decision[Any]],
        config: RunnableConfig,
    ) -> dict[str, Any]:
        return {
            "extracted": extracted,
            "decisions": env.record(config, "planner", decisions),
            "loop_verdict": "escalate",
            "outcome": f"cannot plan the {route} flow: {exc}",
        }

    def _llm_plan(
        state: AgentState, text: str, config: RunnableConfig, replanning: bool
    ) -> dict[str, Any]:
        if llm is None:
            return {"loop_verdict": "escalate", "outcome": "no LLM configured to plan this request"}
        user = f"Request: {text}\nCustomer: {json.dumps(state.get('customer', {}))}"
        if replanning:
            # Bounded and delimited: a tool's output is data for the plan, never its orders.
            user += "\nPrevious steps and results: " + " ".join(
                tool_data(o, limit=_REPLAN_RESULT_CHARS) for o in state.get("observations", [])[-3:]
            )
        calls = tokens = 0
        error = ""
        for _ in range(attempts):
            answer = ask_llm(
                llm,
                _plan_prompt(tools),
                user + error,
                purpose="replan" if replanning else "plan",
                env=env,
                config=config,
                node="planner",
            )
            calls, tokens = calls + 1, tokens + answer.tokens
            try:
                new_plan = parse_plan(answer.text, tools, goal=text)
            except AgentflowError as exc:
                error = f"\nYour previous plan was rejected: {exc.message}. Fix it."
                continue
            return {
                "plan": new_plan.model_dump(mode="json"),
                "cursor": 0,
                "loop_verdict": None,
                "llm_calls": calls,
                "llm_tokens": tokens,
            }
        return {
            "llm_calls": calls,
            "llm_tokens": tokens,
            "loop_verdict": "escalate",
            "outcome": f"the LLM gave no valid plan after {attempts} attempts{error.strip()}",
        }

    return plan
