"""`agentflow bench overhead`: what agentflow costs over the same graph in plain LangGraph.

Two graphs with the same nodes and edges (router, planner, consequence, act, loop,
respond), each compiled with a SQLite checkpointer on its own file in one folder and
invoked with ``durability="sync"``, one request at a time:

- **agentflow**: :func:`agentflow.agent` with deciders that decide nothing (a one-route
  router decides by rule; a loop evaluator and a consequence modeler that answer at
  once), a read-only tool that echoes its input, run by :class:`AgentRuntime`: decisions
  recorded in the ledger on the checkpoints' database, the call through the guarded
  executor, the assessment kept in the idempotency store (the embedded Valkey).
- **plain**: a :class:`~langgraph.graph.StateGraph` whose nodes do the same by hand:
  set the route, make the one-step plan, call the tool, finish, answer.

So the ratio of the p50s is the framework's own cost: decision records, the ledger,
the executor and its store round trip, the bigger state. The models' cost is measured
elsewhere (``bench decisions``). Runs alternate between the two graphs so that a
machine's slow moment hits both alike. Target (DESIGN.md): ratio <= 1.10.
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from agentflow.builder import agent
from agentflow.checkpoints.ledger import Ledger
from agentflow.checkpoints.savers import open_saver, setup_savers
from agentflow.consequence import ConsequenceClass
from agentflow.decision import Decision
from agentflow.nodes._common import NodeEnv
from agentflow.nodes.consequence_modeler import Assessment, ConsequenceModeler
from agentflow.nodes.loop_evaluator import LoopEvaluator
from agentflow.nodes.planner import Flow
from agentflow.nodes.router import Route
from agentflow.runtime import AgentRuntime
from agentflow.settings import Settings
from agentflow.state import AgentState, Plan, PlanStep
from agentflow.tools.contract import tool

__all__ = ["TARGET_RATIO", "run"]

TARGET_RATIO = 1.10
"""DESIGN.md: an agentflow graph with no-op models adds at most 10% to plain LangGraph."""


@tool(read_only=True)
def echo(text: str) -> dict[str, str]:
    """Return the text it was given (a tool that costs nothing)."""
    return {"echo": text}


def _plan(text: str, _customer: dict[str, Any], _fields: dict[str, Any]) -> Plan:
    return Plan(goal="echo", steps=[PlanStep(tool="echo", args={"text": text}, why="asked")])


def _rule(role: str, value: str) -> Decision[str]:
    return Decision[str](role=role, value=value, confidence=1.0, source="rule", latency_ms=0.0)


class _DoneLoop(LoopEvaluator):
    """Says ``continue`` while planned steps remain, then ``done``: no model."""

    def __init__(self) -> None:
        super().__init__(head=None, encoder=None, llm=None)

    def evaluate(
        self, state: AgentState, env: NodeEnv, config: RunnableConfig | None, usage: list[int]
    ) -> tuple[list[Decision[Any]], bool]:
        left = len((state.get("plan") or {}).get("steps") or []) - state.get("cursor", 0)
        return [_rule("loop_evaluator", "continue" if left > 0 else "done")], False


class _SafeModeler(ConsequenceModeler):
    """Calls every call ``safe``: no model."""

    def __init__(self) -> None:
        super().__init__(head=None, encoder=None, llm=None)

    def assess(self, definition: dict[str, Any], args: dict[str, Any], **_: Any) -> Assessment:
        safe: ConsequenceClass = "safe"
        return Assessment(safe, None, safe, (_rule("consequence_modeler", safe),), False)


class _Plain(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    route: str
    plan: dict[str, Any]
    cursor: int
    consequence: str
    observations: list[dict[str, Any]]
    verdict: str
    outcome: str


def _plain_graph() -> StateGraph:
    """The same nodes and edges, written by hand in LangGraph."""

    def router(_s: _Plain) -> dict[str, Any]:
        return {"route": "echo"}

    def planner(s: _Plain) -> dict[str, Any]:
        text = str(s["messages"][-1].content)
        return {"plan": _plan(text, {}, {}).model_dump(mode="json"), "cursor": 0}

    def consequence(_s: _Plain) -> dict[str, Any]:
        return {"consequence": "safe"}

    def act(s: _Plain) -> dict[str, Any]:
        step = s["plan"]["steps"][s["cursor"]]
        output = echo.fn(**step["args"])
        return {"observations": [{"tool": "echo", "output": output}], "cursor": s["cursor"] + 1}

    def loop(s: _Plain) -> dict[str, Any]:
        return {"verdict": "continue" if s["cursor"] < len(s["plan"]["steps"]) else "done"}

    def respond(_s: _Plain) -> dict[str, Any]:
        return {"outcome": "done", "messages": [AIMessage("done")]}

    g = StateGraph(_Plain)
    nodes: dict[str, Any] = {
        "router": router,
        "planner": planner,
        "consequence": consequence,
        "act": act,
        "loop": loop,
        "respond": respond,
    }
    for name, node in nodes.items():
        g.add_node(name, node)
    g.add_edge(START, "router")
    g.add_edge("router", "planner")
    g.add_edge("planner", "consequence")
    g.add_edge("consequence", "act")
    g.add_edge("act", "loop")
    g.add_conditional_edges(
        "loop", lambda s: "consequence" if s["verdict"] == "continue" else "respond"
    )
    g.add_edge("respond", END)
    return g


def _timed(fn: Callable[[int], object], i: int) -> float:
    started = time.perf_counter_ns()
    fn(i)
    return (time.perf_counter_ns() - started) / 1e6


def run(n: int = 300, warmup: int = 20, settings: Settings | None = None) -> dict[str, Any]:
    """Time ``n`` requests through each graph, alternating; a JSON-ready report."""
    with tempfile.TemporaryDirectory(prefix="agentflow-overhead-") as tmp:
        folder = Path(tmp)
        base = settings or Settings()
        url = f"sqlite:///{folder / 'agentflow.db'}"
        settings = base.model_copy(update={"database_url": url})
        setup_savers(url)
        ledger = Ledger(url)
        ledger.setup()
        # The answer is a template, as the plain graph's is: no LLM on either side.
        flow = Flow(plan=_plan, respond=lambda _state: "done")
        route = Route(name="echo", description="anything", target=flow)
        builder, parts = agent(
            [route],
            [echo],
            name="overhead",
            llm=FakeListChatModel(responses=["done"]),
            settings=settings,
            recorder=ledger,
            loop=_DoneLoop(),
            consequence=_SafeModeler(),
        )
        plain_conn = sqlite3.connect(folder / "plain.db", check_same_thread=False)
        plain_conn.execute("PRAGMA journal_mode=WAL")
        plain = _plain_graph().compile(checkpointer=SqliteSaver(plain_conn))
        with open_saver(url) as saver:
            runtime = AgentRuntime(builder.compile(checkpointer=saver), parts, ledger, settings)

            def framework(i: int) -> object:
                result = runtime.run(f"echo {i}", thread_id=f"a{i}")
                if result.status != "done":
                    raise RuntimeError(f"the agentflow graph did not finish: {result}")
                return result

            def by_hand(i: int) -> object:
                config: RunnableConfig = {"configurable": {"thread_id": f"p{i}"}}
                return plain.invoke(
                    {"messages": [HumanMessage(f"echo {i}")]}, config, durability="sync"
                )

            for i in range(warmup):
                framework(-1 - i)
                by_hand(-1 - i)
            ours, theirs = [], []
            for i in range(n):
                ours.append(_timed(framework, i))
                theirs.append(_timed(by_hand, i))
        plain_conn.close()
        ledger.close()
    p50_ours, p50_theirs = statistics.median(ours), statistics.median(theirs)
    ratio = round(p50_ours / p50_theirs, 3)
    return {
        "requests": n,
        "agentflow_p50_ms": round(p50_ours, 3),
        "agentflow_p95_ms": round(statistics.quantiles(ours, n=20)[-1], 3),
        "plain_langgraph_p50_ms": round(p50_theirs, 3),
        "plain_langgraph_p95_ms": round(statistics.quantiles(theirs, n=20)[-1], 3),
        "ratio_p50": ratio,
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio <= TARGET_RATIO,
    }
