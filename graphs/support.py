"""Reference agent: customer support, SLM-first.

- order status      -> lookup tool, templated answer: no LLM
- change address    -> extract order + address, idempotent update: no LLM
- cancel subscription -> schema extraction by the GGUF SLM, idempotent cancellation: no LLM
- refund            -> extract order + amount, irreversible payment: waits for approval
- pricing           -> context pruning over the price documents, then the LLM answers
- complaint         -> the LLM answers (furious customers deserve the big model)

``build()`` returns the uncompiled graph and its parts (the runtime compiles it with its
checkpointer); ``graphs/support_server.py`` holds the compiled graph LangGraph Server loads.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from functools import cache, partial
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langgraph.graph import StateGraph
from pydantic import BaseModel

from agentflow.builder import AgentParts, agent
from agentflow.decision import Decision
from agentflow.errors import AgentflowError, DataError
from agentflow.settings import Settings
from agentflow.state import AgentState, Plan, PlanStep
from graphs.support_store import DEMO_CUSTOMER, SupportStore
from nodes.planner import Flow
from nodes.router import Route
from tools.contract import ToolContext, ToolRegistry, tool

__all__ = ["CancelRequest", "build", "routes", "store", "support_tools"]

_ORDER = re.compile(r"(?<![\w$])#?([A-Z]\d{4,6}|\d{5,6})\b", re.IGNORECASE)
_MONEY = re.compile(
    r"\$\s?(\d{1,6}(?:[.,]\d{2})?)|(\d{1,6}(?:[.,]\d{2})?)\s?(?:dollars|usd|eur|€|£)", re.I
)
_ADDRESS = re.compile(
    r"\b(?:to|address(?: is)?:?|ship it to|deliver(?: it)? to)\s+(\d+[^\n]{6,120})", re.I
)


def _jsonl(name: str) -> list[dict[str, Any]]:
    text = files("graphs").joinpath("data", name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@cache
def store() -> SupportStore:
    """The demo back office (``AGENTFLOW_SUPPORT_DB`` or ``<data_dir>/support.db``)."""
    path = os.environ.get("AGENTFLOW_SUPPORT_DB") or Path(Settings().data_dir) / "support.db"
    return SupportStore(path)


# --------------------------------------------------------------------------- tools
@tool(read_only=True)
def lookup_order(order_id: str) -> dict[str, Any]:
    """Look up an order's status, carrier, tracking number and expected delivery date."""
    order = store().order(order_id)
    if order is None:
        raise ValueError(f"order {order_id} not found")
    return {k: order[k] for k in ("order_id", "status", "carrier", "tracking", "eta")}


@tool(idempotent=True, destructive=False)
def update_shipping_address(order_id: str, address: str, ctx: ToolContext) -> dict[str, Any]:
    """Set the shipping address of an order that has not shipped yet."""
    return store().set_address(order_id, address)


@tool(idempotent=True, destructive=False)
def cancel_subscription(
    email: str, plan: str, effective: Literal["now", "end_of_period"], ctx: ToolContext
) -> dict[str, Any]:
    """Cancel a customer's subscription plan, now or at the end of the billing period."""
    return store().cancel(email, plan, effective)


@tool(irreversible=True, open_world=True, forwards_key=True)
def issue_refund(order_id: str, amount_cents: int, reason: str, ctx: ToolContext) -> dict[str, Any]:
    """Refund money to the customer's card for an order (a real payment; cannot be undone)."""
    return store().refund(order_id, amount_cents, reason, ctx.idempotency_key)


def support_tools() -> ToolRegistry:
    """The four demo tools."""
    return ToolRegistry([lookup_order, update_shipping_address, cancel_subscription, issue_refund])


# --------------------------------------------------------------------------- flows
class CancelRequest(BaseModel):
    """What the cancellation flow extracts from a message."""

    plan: Literal["Basic", "Plus", "Pro", "Team"] | None = None
    """Plan named in the message, if any."""
    when: Literal["now", "end_of_period"] = "end_of_period"
    """Whether the customer wants it to stop now or at renewal."""
    reason: str | None = None
    """Why they leave, in their words."""


_CANCEL_PREFIX = (
    "Extract the cancellation request as JSON.\n"
    "Message: Please cancel my Pro plan right away, too expensive.\n"
    '{"plan": "Pro", "when": "now", "reason": "too expensive"}\n'
    "Message: I'd like to stop my membership when the month ends.\n"
    '{"plan": null, "when": "end_of_period", "reason": null}\n'
)


def _rule(field: str, value: Any, why: str, text: str) -> Decision[Any]:
    return Decision[Any](
        role="extractor",
        value={field: value},
        confidence=1.0,
        source="rule",
        latency_ms=0.0,
        rationale=why,
        input=text,
    )


def _order_id(text: str, customer: dict[str, Any]) -> tuple[str | None, Decision[Any]]:
    match = _ORDER.search(text)
    if match:
        return match.group(1).upper(), _rule(
            "order_id", match.group(1).upper(), "order id in message", text
        )
    latest = store().latest_order(customer.get("email", DEMO_CUSTOMER))
    oid = latest["order_id"] if latest else None
    return oid, _rule("order_id", oid, "no id in message: customer's latest order", text)


def _extract_order(
    text: str, customer: dict[str, Any]
) -> tuple[dict[str, Any], list[Decision[Any]]]:
    oid, decision = _order_id(text, customer)
    return {"order_id": oid}, [decision]


def _extract_address(
    text: str, customer: dict[str, Any]
) -> tuple[dict[str, Any], list[Decision[Any]]]:
    fields, decisions = _extract_order(text, customer)
    match = _ADDRESS.search(text)
    fields["address"] = (
        re.sub(
            r"(?:[\s,.!]+(?:instead|please|thanks?(?: you)?))*[\s,.!]*$",
            "",
            match.group(1).strip(),
            flags=re.I,
        )
        if match
        else None
    )
    decisions.append(_rule("address", fields["address"], "address after 'to'", text))
    return fields, decisions


def _extract_refund(
    text: str, customer: dict[str, Any]
) -> tuple[dict[str, Any], list[Decision[Any]]]:
    fields, decisions = _extract_order(text, customer)
    money = _MONEY.search(text)
    amount: int | None
    if money:
        amount = round(float((money.group(1) or money.group(2)).replace(",", ".")) * 100)
    else:
        order = store().order(fields["order_id"]) if fields["order_id"] else None
        amount = order["total_cents"] if order else None
    fields.update(amount_cents=amount, reason=text[:200])
    decisions.append(_rule("amount_cents", amount, "amount in message, else the order total", text))
    return fields, decisions


def _extract_cancel(
    text: str, customer: dict[str, Any], settings: Settings | None = None
) -> tuple[dict[str, Any], list[Decision[Any]]]:
    from agentflow.models.gguf import load_gguf

    email = customer.get("email", DEMO_CUSTOMER)
    try:
        decision = load_gguf(settings or Settings()).extract(
            "extractor", _CANCEL_PREFIX, text, CancelRequest
        )
        req = CancelRequest.model_validate(decision.value)
        decisions: list[Decision[Any]] = [decision]
    except AgentflowError as exc:
        req, decisions = CancelRequest(), [_rule("cancel", None, f"extraction failed: {exc}", text)]
    sub = store().subscription(email)
    # The account is the source of truth for which plan is active; the message only says when.
    plan = sub["plan"] if sub else req.plan
    if req.plan and sub and req.plan != sub["plan"]:
        decisions.append(_rule("plan", plan, f"message says {req.plan}, account has {plan}", text))
    return {"email": email, "plan": plan, "effective": req.when, "reason": req.reason}, decisions


def _need(fields: dict[str, Any], *names: str) -> None:
    missing = [n for n in names if not fields.get(n)]
    if missing:
        raise DataError(f"could not find {', '.join(missing)} in the request")


def _plan(tool_name: str, goal: str, *needed: str):  # type: ignore[no-untyped-def]
    def make(_text: str, _customer: dict[str, Any], fields: dict[str, Any]) -> Plan:
        _need(fields, *needed)
        args = {k: fields[k] for k in needed}
        if tool_name == "issue_refund":
            args["reason"] = fields.get("reason") or "customer request"
        return Plan(goal=goal, steps=[PlanStep(tool=tool_name, args=args, why=goal)])

    return make


def _last_output(state: AgentState) -> dict[str, Any]:
    return (state.get("observations") or [{}])[-1].get("output") or {}


def _say_order(state: AgentState) -> str:
    o = _last_output(state)
    return (
        f"Order {o.get('order_id')} is {o.get('status')} ({o.get('carrier')}, tracking "
        f"{o.get('tracking')}); expected delivery {o.get('eta')}."
    )


def _say_address(state: AgentState) -> str:
    o = _last_output(state)
    return f"Done: order {o.get('order_id')} will ship to {o.get('address')}."


def _say_cancel(state: AgentState) -> str:
    o = _last_output(state)
    return f"Your {o.get('plan')} subscription is cancelled, effective {o.get('effective')}."


def _say_refund(state: AgentState) -> str:
    o = _last_output(state)
    amount = (o.get("amount_cents") or 0) / 100
    return (
        f"Refund {o.get('refund_id')} of ${amount:.2f} for order {o.get('order_id')} is on its way."
    )


_DESCRIPTIONS = {
    "order_status": "where an order is, tracking, delivery date",
    "change_address": "change the shipping address of an order",
    "cancel_subscription": "cancel or stop a subscription or membership plan",
    "refund": "get money back for an order or a charge",
    "pricing": "questions about plans, prices, discounts and what a plan includes",
    "complaint": "upset or angry customers, complaints, asking for a manager",
}
_FLOWS = {
    "order_status": Flow(
        plan=_plan("lookup_order", "tell the customer where the order is", "order_id"),
        extract=_extract_order,
        respond=_say_order,
    ),
    "change_address": Flow(
        plan=_plan("update_shipping_address", "change the shipping address", "order_id", "address"),
        extract=_extract_address,
        respond=_say_address,
    ),
    "cancel_subscription": Flow(
        plan=_plan("cancel_subscription", "cancel the subscription", "email", "plan", "effective"),
        extract=_extract_cancel,
        respond=_say_cancel,
    ),
    "refund": Flow(
        plan=_plan("issue_refund", "refund the customer", "order_id", "amount_cents"),
        extract=_extract_refund,
        respond=_say_refund,
    ),
}


def routes(settings: Settings | None = None) -> list[Route]:
    """The six routes with their training examples, flows and documents.

    ``settings`` are the agent's: the cancellation flow's extractor loads the GGUF they name.
    """
    cancel = _FLOWS["cancel_subscription"]
    flows = {
        **_FLOWS,
        "cancel_subscription": replace(cancel, extract=partial(_extract_cancel, settings=settings)),
    }
    examples: dict[str, list[str]] = {name: [] for name in _DESCRIPTIONS}
    for row in _jsonl("support_routes.jsonl"):
        examples[row["label"]].append(row["text"])
    docs = tuple(
        {"id": d["id"], "title": d["title"], "text": d["text"]}
        for d in _jsonl("support_docs.jsonl")
    )
    return [
        Route(
            name=name,
            description=desc,
            examples=tuple(examples[name]),
            target=flows.get(name, "llm"),
            documents=docs if name == "pricing" else (),
        )
        for name, desc in _DESCRIPTIONS.items()
    ]


def build(
    *,
    settings: Settings | None = None,
    llm: BaseChatModel | None = None,
    slm_roles: bool = True,
    **kwargs: Any,
) -> tuple[StateGraph, AgentParts]:
    """The support agent's graph (uncompiled) and parts."""
    graph_, parts = agent(
        routes(settings),
        support_tools(),
        name="support",
        settings=settings,
        llm=llm,
        slm_roles=slm_roles,
        **kwargs,
    )
    parts.extra["store"] = store()
    return graph_, parts
