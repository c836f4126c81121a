"""``agentflow.agent(...)``: assemble the SLM control-flow nodes into a LangGraph graph.

The result is a plain :class:`langgraph.graph.StateGraph`, so users can add nodes and
edges before compiling it with any checkpointer; custom graphs can use the node
factories in ``nodes/`` directly instead. The wiring::

    START -> router -+-> planner -> consequence -+-> approval -> act -> loop -+-> respond -> END
                     |      |  ^            ^    +------------->  act         +-> consequence
                     |      |  |            +--- approval (an edit is assessed anew)
                     |      |  +------------------------- replan -------------+-> planner
                     |      +-> respond (ask the user for a missing field)    +-> escalation -> END
                     +-> respond (LLM routes)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.graph import END, START, StateGraph

from agentflow.consequence import ConsequenceClass
from agentflow.decision import EscalationPolicy
from agentflow.errors import ToolError
from agentflow.examples import Example
from agentflow.heads import consequence_examples, loop_examples
from agentflow.models.encoder import Encoder, load_encoder
from agentflow.nodes._common import NodeEnv
from agentflow.nodes.act import act_node
from agentflow.nodes.approval import approval_node, needs_approval
from agentflow.nodes.consequence_modeler import ConsequenceModeler, consequence_node
from agentflow.nodes.context import DocumentIndex
from agentflow.nodes.escalation import escalation_node
from agentflow.nodes.loop_evaluator import LoopEvaluator, LoopGuards, loop_node
from agentflow.nodes.planner import Flow, planner_node
from agentflow.nodes.respond import respond_node
from agentflow.nodes.router import Route, Router, router_node
from agentflow.recording import NullRecorder, Recorder
from agentflow.retrain import head_in_use
from agentflow.settings import Settings
from agentflow.state import AgentState
from agentflow.tools.contract import ToolRegistry, ToolSpec
from agentflow.tools.executor import GuardedExecutor
from agentflow.tools.journal import EffectJournal
from agentflow.tools.store import IdempotencyStore

__all__ = ["AgentParts", "agent"]


@dataclass
class AgentParts:
    """The deciders an agent was built with (exposed for benchmarks and tests)."""

    router: Router
    """Route decisions."""
    loop: LoopEvaluator
    """Loop verdicts."""
    consequence: ConsequenceModeler
    """Consequence assessments."""
    executor: GuardedExecutor
    """Guarded tool execution."""
    tools: ToolRegistry
    """Registered tools."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything a graph module wants to expose."""


def _executor(tools: ToolRegistry, settings: Settings, recorder: Recorder) -> GuardedExecutor:
    store = IdempotencyStore.from_settings(settings)
    # The ledger (what AgentRuntime records to) is also the effects journal: outcomes of
    # non-safe calls outlive the store's retention (agentflow.tools.journal).
    journal = recorder if isinstance(recorder, EffectJournal) else None
    return GuardedExecutor(
        tools,
        store,
        lease_s=settings.lease_seconds,
        recorder=recorder,
        assessed_only=True,
        journal=journal,
    )


def _sync_store(executor: GuardedExecutor) -> Callable[[], IdempotencyStore] | None:
    """The executor's store for the approval node, when it is one the node can use."""
    store = executor.store
    return (lambda: store) if isinstance(store, IdempotencyStore) else None


def _remember(
    registry: ToolRegistry, store: Callable[[], IdempotencyStore] | None
) -> Callable[[str, str, dict[str, Any], ConsequenceClass], None] | None:
    """Where the consequence node keeps its verdicts for the executor (see GuardedExecutor)."""
    if store is None:
        return None

    def remember(thread_id: str, tool: str, args: dict[str, Any], cls: ConsequenceClass) -> None:
        try:
            digest = registry.get(tool).digest(args)
        except ToolError:
            return  # the executor refuses these arguments anyway
        store().assess(thread_id, digest, cls)

    return remember


def agent(
    routes: Sequence[Route],
    tools: ToolRegistry | Iterable[ToolSpec],
    *,
    name: str = "agent",
    llm: BaseChatModel | None = None,
    settings: Settings | None = None,
    executor: GuardedExecutor | None = None,
    recorder: Recorder | None = None,
    encoder: Encoder | None = None,
    guards: LoopGuards = LoopGuards(),
    slm_roles: bool = True,
    router: Router | None = None,
    loop: LoopEvaluator | None = None,
    consequence: ConsequenceModeler | None = None,
) -> tuple[StateGraph, AgentParts]:
    """Build the agent graph (uncompiled) and the parts it decides with.

    ``llm`` defaults to :func:`agentflow.models.llm.make_llm` (the local GGUF when no
    endpoint is configured). ``slm_roles=False`` replaces every small-model role by the
    LLM, which is how the workload benchmark measures the SLM-first saving. A decider
    given (``router``, ``loop``, ``consequence``: one built on your own heads, or a stub
    in a test) is used as it is; the others are built from the shipped examples, and
    the encoder is loaded only when one of them needs it.
    """
    settings = settings or Settings()
    registry = tools if isinstance(tools, ToolRegistry) else ToolRegistry(list(tools))
    recorder = recorder or NullRecorder()
    if llm is None:
        # Deferred: it imports llama.cpp (1.7 s), which an agent given its LLM never needs.
        from agentflow.models.llm import make_llm

        llm = make_llm(settings)
    env = NodeEnv(recorder=recorder, graph=name, cost_per_1k_tokens=settings.llm_cost_per_1k_tokens)
    route_examples = [Example(text=t, label=r.name) for r in routes for t in r.examples]
    use = slm_roles
    needs_encoder = (
        router is None or loop is None or consequence is None or any(r.documents for r in routes)
    )
    encoder = encoder or (load_encoder(settings) if needs_encoder else None)
    if router is None:
        router = Router(
            routes,
            encoder=encoder,
            # One route is taken by rule: there is nothing to tell apart, so no head.
            head=head_in_use("router", route_examples, [r.name for r in routes], encoder, settings)
            if use and encoder and route_examples and len({r.name for r in routes}) > 1
            else None,
            llm=llm,
            policy=EscalationPolicy(threshold=settings.router_threshold),
        )
    if loop is None:
        loop_rows, loop_extra = loop_examples()
        loop = LoopEvaluator(
            head=head_in_use(
                "loop_evaluator",
                loop_rows,
                {ex.label for ex in loop_rows},
                encoder,
                settings,
                extra=loop_extra,
            )
            if use and encoder
            else None,
            encoder=encoder,
            llm=llm,
            guards=guards,
            threshold=settings.loop_threshold,
        )
    if consequence is None:
        examples = consequence_examples()
        consequence = ConsequenceModeler(
            head=head_in_use(
                "consequence_modeler", examples, {ex.label for ex in examples}, encoder, settings
            )
            if use and encoder
            else None,
            encoder=encoder,
            llm=llm,
            threshold=settings.consequence_threshold,
        )
    modeler = consequence
    executor = executor or _executor(registry, settings, recorder)
    flows = {r.name: r.target for r in routes if isinstance(r.target, Flow)}
    planned = set(flows) | {r.name for r in routes if r.target == "planner"}
    indexes = {
        r.name: DocumentIndex(r.documents, encoder) for r in routes if r.documents and encoder
    }

    def definition(tool: str) -> dict[str, Any] | None:
        return registry.get(tool).definition() if tool in registry else None

    g = StateGraph(AgentState)
    nodes: dict[str, Any] = {
        "router": router_node(router, env, frozenset(flows)),
        "planner": planner_node(
            flows,
            registry,
            llm,
            env,
            policy=EscalationPolicy(threshold=settings.extractor_threshold, escalate_far=False),
        ),
        "consequence": consequence_node(
            modeler, definition, env, _remember(registry, _sync_store(executor))
        ),
        "approval": approval_node(
            registry, env, _sync_store(executor), ttl_s=settings.approval_ttl_seconds
        ),
        "act": act_node(executor, env),
        "loop": loop_node(loop, env),
        "respond": respond_node(flows, indexes, llm, env),
        "escalation": escalation_node(llm, env),
    }
    for node_name, node in nodes.items():
        g.add_node(node_name, node)

    g.add_edge(START, "router")
    g.add_conditional_edges(
        "router",
        lambda s: "planner" if s.get("route") in planned else "respond",
        ["planner", "respond"],
    )
    g.add_conditional_edges(
        "planner",
        lambda s: {"escalate": "escalation", "ask": "respond"}.get(
            s.get("loop_verdict") or "", "consequence"
        ),
        ["escalation", "respond", "consequence"],
    )

    def after_consequence(s: AgentState) -> str:
        if s.get("status") == "failed":
            return "respond"
        return "approval" if needs_approval(s.get("assessment")) else "act"

    g.add_conditional_edges("consequence", after_consequence, ["respond", "approval", "act"])

    def after_approval(s: AgentState) -> str:
        verdict = s.get("loop_verdict")
        return {"rejected": "respond", "replan": "planner", "reassess": "consequence"}.get(
            verdict or "", "act"
        )

    g.add_conditional_edges(
        "approval", after_approval, ["respond", "planner", "consequence", "act"]
    )

    def after_act(s: AgentState) -> str:
        if s.get("loop_verdict") == "reapprove":
            return "approval"
        flow = flows.get(s.get("route") or "")
        step_failed = (s.get("observations") or [{}])[-1].get("status") == "failed"
        # A flow that explains its own failures answers them; no replan is asked for.
        explained = step_failed and flow is not None and flow.explain_failure is not None
        return "respond" if s.get("status") == "failed" or explained else "loop"

    g.add_conditional_edges("act", after_act, ["approval", "respond", "loop"])
    g.add_conditional_edges(
        "loop",
        lambda s: {"continue": "consequence", "replan": "planner", "done": "respond"}.get(
            s.get("loop_verdict") or "", "escalation"
        ),
        ["consequence", "planner", "respond", "escalation"],
    )
    g.add_edge("respond", END)
    g.add_edge("escalation", END)
    parts = AgentParts(
        router=router, loop=loop, consequence=modeler, executor=executor, tools=registry
    )
    return g, parts
