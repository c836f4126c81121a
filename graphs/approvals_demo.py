"""A tiny agent with one irreversible tool and no models: an approval round trip in milliseconds.

``"send $25 to sam@example.com"`` becomes a one-step plan calling ``send_payment``; the
call is assessed by the tool's declared annotations alone (irreversible: a rule decision,
no model), stops at the real approval gate (:func:`agentflow.nodes.approval.approval_node`), and
after an approval runs through the guarded executor under the step's derived key, so a
resumed or replayed run never pays twice. Payments are appended to
``<data_dir>/approvals_demo_payments.jsonl`` for tests to count
(``AGENTFLOW_DEMO_PAYMENT_SECONDS`` makes each payment take that long).

LangGraph Server loads ``graph`` (compiled, no checkpointer: the server brings its own);
:class:`agentflow.runtime.AgentRuntime` calls :func:`build`. Nothing heavy happens at
import: the idempotency store is opened on the first payment.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from agentflow.consequence import floor_from_annotations
from agentflow.decision import Decision
from agentflow.nodes._common import NodeEnv, ai, last_user_text
from agentflow.nodes.act import act_node
from agentflow.nodes.approval import approval_node, needs_approval, request_for
from agentflow.recording import NullRecorder, Recorder
from agentflow.settings import Settings
from agentflow.state import AgentState, Plan, PlanStep
from agentflow.tools.contract import ToolContext, ToolRegistry, tool
from agentflow.tools.executor import GuardedExecutor
from agentflow.tools.store import IdempotencyStore

__all__ = [
    "build",
    "demo_tools",
    "effects",
    "graph",
    "load_workload",
    "payments",
    "payments_path",
    "send_payment",
]

_REQUEST = re.compile(
    r"\b(?:send|pay)\s+\$?\s?(\d{1,6}(?:\.\d{1,2})?)\s*(?:dollars|usd)?\s+to\s+([\w.+-]+@[\w-]+(?:\.[\w-]+)+)",
    re.IGNORECASE,
)
_LOCK = threading.Lock()


def payments_path() -> Path:
    """Where payments are written: ``<AGENTFLOW_DATA_DIR>/approvals_demo_payments.jsonl``."""
    return Path(Settings().data_dir) / "approvals_demo_payments.jsonl"


def payments() -> list[dict[str, Any]]:
    """Every payment sent so far (one per line of :func:`payments_path`)."""
    path = payments_path()
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@tool(irreversible=True, open_world=True, forwards_key=True)
def send_payment(to: str, amount_cents: int, ctx: ToolContext) -> dict[str, Any]:
    """Send money to someone's account (a real transfer: it cannot be undone)."""
    if amount_cents <= 0:
        raise ValueError("the amount must be positive")
    # A slow payment provider, for tests that kill a worker mid-call: half of
    # AGENTFLOW_DEMO_PAYMENT_SECONDS passes before the transfer, half after it.
    pause = float(os.environ.get("AGENTFLOW_DEMO_PAYMENT_SECONDS") or 0) / 2
    time.sleep(pause)
    path = payments_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _LOCK, path.open("a", encoding="utf-8") as out:
        number = len(payments()) + 1
        row = {
            "payment_id": f"pay_{number}",
            "to": to,
            "amount_cents": amount_cents,
            "idempotency_key": ctx.idempotency_key,
        }
        out.write(json.dumps(row) + "\n")
        out.flush()
        os.fsync(out.fileno())
    time.sleep(pause)
    return row


def demo_tools() -> ToolRegistry:
    """The demo's one tool."""
    return ToolRegistry([send_payment])


def _rule(role: str, value: Any, why: str, text: str) -> Decision[Any]:
    return Decision[Any](
        role=role,
        value=value,
        confidence=1.0,
        source="rule",
        latency_ms=0.0,
        rationale=why,
        input=text,
    )


def _propose(
    tools: ToolRegistry, env: NodeEnv
) -> Callable[[AgentState, RunnableConfig], dict[str, Any]]:
    floor = floor_from_annotations(tools.get("send_payment").annotations) or "unknown"

    def propose(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        text = last_user_text(state)
        match = _REQUEST.search(text)
        if match is None:
            decision = _rule("extractor", None, "no 'send $N to EMAIL' in the message", text)
            return {
                "status": "done",
                "decisions": env.record(config, "extractor", [decision]),
                "outcome": "I can only send payments: say 'send $25 to sam@example.com'.",
            }
        args: dict[str, Any] = {
            "to": match.group(2),
            "amount_cents": round(float(match.group(1)) * 100),
        }
        plan = Plan(
            goal=f"send {args['amount_cents'] / 100:.2f} to {args['to']}",
            steps=[PlanStep(tool="send_payment", args=args, why="the user asked for it")],
        )
        why = f"send_payment declares irreversible=True: the floor is {floor}"
        assessment = {
            "tool": "send_payment",
            "args": args,
            "class": floor,
            "floor": floor,
            "proposed": None,
            "confidence": 1.0,
            "source": "rule",
            "rationale": why,
            "approved": False,
        }
        decisions = [
            _rule("extractor", args, "amount and recipient in the message", text),
            _rule("consequence_modeler", floor, why, text),
        ]
        thread_id = env.context(config, "propose").thread_id
        proposed: AgentState = {**state, "plan": plan.model_dump(mode="json"), "cursor": 0}
        proposed["assessment"] = assessment
        pending = request_for(proposed, thread_id) if needs_approval(assessment) else None
        return {
            "plan": plan.model_dump(mode="json"),
            "cursor": 0,
            "assessment": assessment,
            "pending_approval": pending.model_dump(mode="json") if pending else None,
            "decisions": env.record(config, "propose", decisions),
        }

    return propose


def _respond(state: AgentState) -> dict[str, Any]:
    if state.get("status") in ("done", "failed") and state.get("outcome"):
        return {"messages": [ai(state["outcome"] or "")]}
    last = (state.get("observations") or [{}])[-1]
    out = last.get("output") or {}
    if last.get("status") in ("ok", "replayed"):
        text = f"Sent ${out.get('amount_cents', 0) / 100:.2f} to {out.get('to')} ({out.get('payment_id')})."
    elif last.get("status") == "rejected":
        text = f"Not sent: {last.get('error')}"
    else:
        text = f"The payment did not go through: {last.get('error') or last.get('status')}"
    return {"status": "done", "outcome": text, "messages": [ai(text)]}


def build(
    *, settings: Settings | None = None, recorder: Recorder | None = None, **_: Any
) -> tuple[StateGraph, None]:
    """The demo graph (uncompiled); the extra keywords ``AgentRuntime`` passes are ignored."""
    tools = demo_tools()
    env = NodeEnv(recorder=recorder or NullRecorder(), graph="approvals_demo")

    s = settings or Settings()

    @cache
    def store() -> IdempotencyStore:
        # Opened on the first answer or payment, so importing (and LangGraph Server's
        # start) stays cheap.
        return IdempotencyStore.from_settings(s)

    @cache
    def act() -> Callable[[AgentState, RunnableConfig], dict[str, Any]]:
        executor = GuardedExecutor(tools, store(), lease_s=s.lease_seconds, recorder=env.recorder)
        return act_node(executor, env)

    g = StateGraph(AgentState)
    # cast: langgraph's node protocols do not accept a TypedDict state with config (mypy)
    g.add_node("propose", cast(Any, _propose(tools, env)))
    g.add_node(
        "approval", cast(Any, approval_node(tools, env, store, ttl_s=s.approval_ttl_seconds))
    )
    g.add_node("act", cast(Any, lambda state, config: act()(state, config)))
    g.add_node("respond", _respond)
    g.add_edge(START, "propose")
    g.add_conditional_edges(
        "propose",
        lambda s: (
            "approval"
            if needs_approval(s.get("assessment"))
            else ("act" if s.get("plan") else "respond")
        ),
        ["approval", "act", "respond"],
    )
    g.add_conditional_edges(
        "approval",
        lambda s: "act" if (s.get("assessment") or {}).get("approved") else "respond",
        ["act", "respond"],
    )
    g.add_conditional_edges(
        "act",
        # An approval that expired before the payment began is asked for again.
        lambda s: "approval" if s.get("loop_verdict") == "reapprove" else "respond",
        ["approval", "respond"],
    )
    g.add_edge("respond", END)
    return g, None


graph = build()[0].compile()
"""The compiled graph LangGraph Server serves (``langgraph.json``)."""


def load_workload() -> list[str]:
    """The messages `agentflow bench load` sends: payments of several sizes to several people."""
    return [f"send ${n % 40 + 1} to payee{n % 7}@example.com" for n in range(56)]


def effects(data_dir: Path) -> list[dict[str, Any]]:
    """Every payment sent under ``data_dir``, with its idempotency key."""
    path = Path(data_dir) / "approvals_demo_payments.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
