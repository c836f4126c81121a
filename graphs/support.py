"""Reference agent: customer support, SLM-first.

- order status      -> lookup tool, templated answer: no LLM
- change address    -> extract order + complete address (else ask for it), idempotent
                       update: no LLM
- cancel subscription -> schema extraction by the GGUF SLM, idempotent cancellation: no LLM
- refund            -> extract order + amount, irreversible payment: waits for approval
- pricing           -> context pruning over the price documents, then the LLM answers
- complaint         -> the LLM answers (furious customers deserve the big model)

A back-office refusal (an order already shipped, an unknown order) is answered in the
back office's own words, without the LLM. The extractors live in ``support_extract``.

``build()`` returns the uncompiled graph and its parts (the runtime compiles it with its
checkpointer); ``graphs/support_server.py`` holds the compiled graph LangGraph Server loads.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langgraph.graph import StateGraph

from agentflow.builder import AgentParts, agent
from agentflow.nodes.planner import Flow, MissingFields
from agentflow.nodes.router import Route
from agentflow.settings import Settings
from agentflow.state import AgentState, Plan, PlanStep
from agentflow.tools.contract import ToolContext, ToolRegistry, tool
from graphs.support_extract import (
    CALIBRATION,
    LABELLED,
    calibration_key,
    extract_address,
    extract_cancel,
    extract_order,
    extract_refund,
    extractors,
)
from graphs.support_store import DATA, Refusal, SupportStore, store

__all__ = [
    "CALIBRATION",
    "LABELLED",
    "build",
    "calibration_key",
    "effects",
    "extractors",
    "load_workload",
    "reset",
    "routes",
    "store",
    "support_tools",
]


def _jsonl(name: str) -> list[dict[str, Any]]:
    text = (DATA / name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --------------------------------------------------------------------------- tools
@tool(read_only=True)
def lookup_order(order_id: str) -> dict[str, Any]:
    """Look up an order's status, carrier, tracking number and expected delivery date."""
    order = store().order(order_id)
    if order is None:
        raise Refusal(f"I could not find order {order_id}")
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
def _ask_address(missing: list[str], fields: dict[str, Any]) -> str:
    order = store().order(fields["order_id"]) if fields.get("order_id") else None
    if order is None:
        return "Which order should I change, and what is the complete new address?"
    return (
        f"Order {order['order_id']} is set to ship to {order['address']}. What is the complete "
        "new address, with street, city and postcode? I will update it as soon as you reply."
    )


def _confirm(_unsure: list[str], fields: dict[str, Any]) -> str:
    """What the agent is about to do, in plain words, for the customer to confirm."""
    if "effective" in fields:
        sub = store().subscription(fields.get("email") or "")
        plan = fields.get("plan") or (sub or {}).get("plan") or "subscription"
        when = (
            "now, effective today"
            if fields["effective"] == "now"
            else f"at the end of the billing period, on {(sub or {}).get('renews', 'its renewal date')}"
        )
        return f"Cancel your {plan} plan {when}? Reply yes, or tell me what to change."
    order = f"order {fields.get('order_id')}"
    if "address" in fields:
        doing = f"ship {order} to {fields.get('address')}"
    elif "amount_cents" in fields:
        doing = f"refund ${(fields.get('amount_cents') or 0) / 100:.2f} for {order}"
    else:
        doing = f"look up {order}"
    return f"Shall I {doing}? Reply yes, or tell me what to change."


def _say_refused(state: AgentState) -> str | None:
    """The back office's own words when a business rule said no; None for anything else."""
    error = (state.get("observations") or [{}])[-1].get("error") or ""
    prefix = f"{Refusal.__name__}: "
    if not error.startswith(prefix):
        return None
    return (
        f"Sorry, {error.removeprefix(prefix)}. Reply here if you would like a colleague to "
        "look at it."
    )


def _need(fields: dict[str, Any], *names: str) -> None:
    missing = [n for n in names if not fields.get(n)]
    if missing:
        raise MissingFields(missing)


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
        extract=extract_order,
        respond=_say_order,
        explain_failure=_say_refused,
        confirm=_confirm,
    ),
    "change_address": Flow(
        plan=_plan("update_shipping_address", "change the shipping address", "order_id", "address"),
        extract=extract_address,
        respond=_say_address,
        ask=_ask_address,
        explain_failure=_say_refused,
        confirm=_confirm,
    ),
    "cancel_subscription": Flow(
        plan=_plan("cancel_subscription", "cancel the subscription", "email", "plan", "effective"),
        extract=extract_cancel,
        respond=_say_cancel,
        explain_failure=_say_refused,
        confirm=_confirm,
    ),
    "refund": Flow(
        plan=_plan("issue_refund", "refund the customer", "order_id", "amount_cents"),
        extract=extract_refund,
        respond=_say_refund,
        explain_failure=_say_refused,
        confirm=_confirm,
    ),
}


def routes(settings: Settings | None = None) -> list[Route]:
    """The six routes with their training examples, flows and documents.

    ``settings`` are the agent's: the cancellation flow's extractor loads the GGUF they name.
    """
    cancel = _FLOWS["cancel_subscription"]
    flows = {
        **_FLOWS,
        "cancel_subscription": replace(cancel, extract=partial(extract_cancel, settings=settings)),
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


# --------------------------------------------------------------------------- load benchmark


def load_workload() -> list[str]:
    """The messages `agentflow bench load` sends: the shipped workload's requests that the
    small models handle (pricing and complaint answers are the LLM's by design)."""
    rows = _jsonl("support_workload.jsonl")
    return [r["text"] for r in rows if r["expected_route"] not in ("pricing", "complaint")]


def effects(data_dir: Path) -> list[dict[str, Any]]:
    """Every refund the back office under ``data_dir`` holds, with its idempotency key."""
    path = os.environ.get("AGENTFLOW_SUPPORT_DB") or Path(data_dir) / "support.db"
    return SupportStore(path).refunds()


_USUAL: list[str | None] = []


def reset(folder: Path | None) -> None:
    """Use a fresh back office under ``folder`` from now on (``None``: the one in use before
    the first reset again). `agentflow bench workload` gives each of its modes its own."""
    if folder is None:
        usual = _USUAL.pop() if _USUAL else os.environ.get("AGENTFLOW_SUPPORT_DB")
        if usual is None:
            os.environ.pop("AGENTFLOW_SUPPORT_DB", None)
        else:
            os.environ["AGENTFLOW_SUPPORT_DB"] = usual
    else:
        if not _USUAL:
            _USUAL.append(os.environ.get("AGENTFLOW_SUPPORT_DB"))
        Path(folder).mkdir(parents=True, exist_ok=True)
        os.environ["AGENTFLOW_SUPPORT_DB"] = str(Path(folder) / "support.db")
    store.cache_clear()
