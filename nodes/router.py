"""The router: which branch a request takes.

An encoder head trained on the routes' example utterances decides by default; a route
set without examples is decided by the generative SLM, constrained to the route names.
An agent with one route needs no model: every request takes it, by rule.
Below the threshold (or on invalid output) the LLM decides, and its verdict is recorded
so the head can be retrained on it. If the LLM fails too, the request goes to the
built-in ``llm`` route (the LLM answers it directly): the router's safe default.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig

from agentflow.decision import Decision, EscalationPolicy, Resolution, resolve
from agentflow.models.encoder import Encoder
from agentflow.models.head import EncoderHead
from agentflow.nodes._common import NodeEnv, last_user_text, llm_choice
from agentflow.nodes._requests import is_yes, separate
from agentflow.state import AgentState

__all__ = ["LLM_ROUTE", "MAX_ROUTED_CHARS", "Route", "Router", "router_node"]

LLM_ROUTE = "llm"
"""Built-in route: the LLM answers the request itself (the router's safe default)."""
MAX_ROUTED_CHARS = 2000
"""Longer messages take the LLM route by rule: the encoder reads only its first 256
tokens (about 1,000 characters), so its confidence would be about part of the message."""


@dataclass(frozen=True)
class Route:
    """A branch a request can take."""

    name: str
    """Route name (what the router outputs)."""
    description: str
    """What requests belong here (the LLM and the generative SLM read it)."""
    examples: tuple[str, ...] = ()
    """Example utterances; the encoder head is trained on them."""
    target: Any = None
    """What handles the route: a ``agentflow.nodes.planner.Flow``, ``"llm"``, ``"planner"`` or a graph."""
    documents: tuple[dict[str, str], ...] = field(default=())
    """Documents to prune and hand to the LLM for this route (id, title, text)."""


class Router:
    """Decides a route for a text, escalating by policy."""

    def __init__(
        self,
        routes: Sequence[Route],
        *,
        encoder: Encoder | None,
        head: EncoderHead | None,
        llm: BaseChatModel | None,
        policy: EscalationPolicy,
        choose: Callable[[str, str, Sequence[str]], Decision[str]] | None = None,
    ) -> None:
        self.routes = {r.name: r for r in routes}
        self.encoder, self.head, self.llm, self.policy = encoder, head, llm, policy
        self._choose = choose
        names = ", ".join(self.routes)
        self._prefix = (
            "Classify the customer message into one route.\n"
            + "".join(f"- {r.name}: {r.description}\n" for r in routes)
            + f"Answer with one of: {names}.\n"
        )

    def _slm(self, text: str) -> Callable[[], Decision[str]] | None:
        if len(self.routes) == 1:
            only = next(iter(self.routes))
            return lambda: Decision[str](
                role="router",
                value=only,
                confidence=1.0,
                source="rule",
                latency_ms=0.0,
                rationale="the agent has one route",
                input=text,
            )
        if self.head is not None and self.encoder is not None:
            head, encoder = self.head, self.encoder
            return lambda: head.decide(text, encoder)
        if self._choose is not None:
            choose = self._choose
            return lambda: choose(self._prefix, text, list(self.routes))
        return None

    def _llm_verdict(
        self, text: str, env: NodeEnv, config: RunnableConfig | None, usage: list[int]
    ) -> Callable[[Decision[str] | None], Decision[str]] | None:
        if self.llm is None:
            return None
        llm = self.llm

        def verdict(small: Decision[str] | None) -> Decision[str]:
            hint = f" (a small model guessed {small.value!r})" if small is not None else ""
            return llm_choice(
                llm,
                role="router",
                system=self._prefix,
                user=f"Message: {text}\nRoute{hint}:",
                choices=list(self.routes),
                input=text,
                env=env,
                config=config,
                usage=usage,
            )

        return verdict

    def decide(
        self,
        text: str,
        env: NodeEnv | None = None,
        config: RunnableConfig | None = None,
        usage: list[int] | None = None,
    ) -> Resolution[str]:
        """Route ``text``; the resolution holds every decision taken on the way.

        LLM tokens spent are appended to ``usage`` when given. A message with no word in
        it (empty, blanks, punctuation) is not given to the small model, which would place
        it somewhere with confidence: it takes the LLM route by rule, and so does a message
        longer than :data:`MAX_ROUTED_CHARS`.
        """
        why = _unroutable(text)
        if why is not None:
            rule = Decision[str](
                role="router",
                value=LLM_ROUTE,
                confidence=1.0,
                source="rule",
                latency_ms=0.0,
                input=text,
                rationale=f"{why}: the LLM answers",
            )
            return Resolution(final=rule, trail=(rule,), llm_called=False)
        verdict = self._llm_verdict(
            text, env or NodeEnv(), config, usage if usage is not None else []
        )
        return resolve("router", self._slm(text), verdict, LLM_ROUTE, self.policy)


def _unroutable(text: str) -> str | None:
    """Why ``text`` is not for the small model to route, if it is not."""
    if not re.search(r"\w", text):
        return "no words to route"
    if len(text) > MAX_ROUTED_CHARS:
        return f"{len(text)} characters, more than the small model reads"
    return None


def router_node(
    router: Router, env: NodeEnv, actionable: frozenset[str] = frozenset()
) -> Callable[[AgentState, RunnableConfig], dict[str, Any]]:
    """A LangGraph node that routes the latest user message.

    It also opens the turn. When the agent's last answer asked for missing details, the
    new message is read after the request it completes, so "2 Orchard Row, Ithaca" is
    routed and extracted together with "change the address of #63820"; when it asked
    the user to confirm fields, a plain yes keeps the request, its route and its fields.
    A message asking for two things the agent would do (routes in ``actionable``) is cut
    in two (:func:`agentflow.nodes._requests.separate`): this turn handles the first, the rest
    waits in ``deferred`` until the user says to go on. What earlier turns left behind
    (verdict, outcome) is cleared.
    """

    def confident(piece: str) -> str | None:
        small = router._slm(piece) if _unroutable(piece) is None else None
        decision = small() if small is not None else None
        return decision.value if decision is not None and router.policy.trusts(decision) else None

    def route(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        usage: list[int] = []
        text = last_user_text(state)
        awaiting = state.get("awaiting") or {}
        deferred = list(state.get("deferred") or [])
        turn: dict[str, Any] = {"awaiting": None, "confirmed": None}
        if awaiting.get("confirm") and is_yes(text):
            return {
                **turn,
                "route": awaiting["route"],
                "request": awaiting["request"],
                "confirmed": awaiting["fields"],
                "loop_verdict": None,
                "outcome": None,
                "status": "running",
            }
        if awaiting:
            text = f"{awaiting['request']}\n{text}"
        elif deferred and is_yes(text):
            text, deferred = deferred[0], deferred[1:]
        else:
            deferred = []
            # A message the small model may not route (blank, too long) is not cut up either.
            cut = actionable and _unroutable(text) is None
            requests = separate(text, confident, set(actionable)) if cut else [text]
            text, deferred = requests[0], requests[1:]
        resolution = router.decide(text, env, config, usage)
        return {
            **turn,
            "route": resolution.final.value,
            "request": text,
            "deferred": deferred,
            "loop_verdict": None,
            "outcome": None,
            "decisions": env.record(config, "router", resolution.trail),
            "llm_calls": int(resolution.llm_called),
            "llm_tokens": sum(usage),
            "status": "running",
        }

    return route
