"""Run, resume and inspect agent threads durably: the one place CLI, benchmarks and the
server go through.

:meth:`AgentRuntime.open` loads a graph module, opens the checkpoint saver and the
ledger on the configured database, and compiles the graph with the saver, so a process
restart loses nothing: a thread waiting for approval is resumed by any later process.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langgraph.types import Command
from pydantic import BaseModel, Field

from agentflow.builder import AgentParts
from agentflow.checkpoints.ledger import Ledger
from agentflow.checkpoints.savers import open_saver
from agentflow.errors import (
    ApprovalError,
    UnfinishedRunError,
    UnknownApprovalError,
)
from agentflow.graph_module import load_graph_module
from agentflow.nodes.approval import ApprovalAnswer, ApprovalRequest, accept_answer
from agentflow.recording import ApprovalRecord, FanOutRecorder, RunContext
from agentflow.settings import Settings
from agentflow.tools.store import IdempotencyStore
from agentflow.tracing import tracing_session

__all__ = ["AgentRuntime", "RunResult"]

_log = logging.getLogger(__name__)


class RunResult(BaseModel):
    """What one run (or resumption) of a thread did."""

    thread_id: str
    """The thread."""
    route: str | None = None
    """Route the router chose."""
    decisions: list[dict[str, Any]] = Field(default_factory=list)
    """Decisions taken in this thread so far (role, value, confidence, source, latency...)."""
    llm_calls: int = 0
    """LLM calls in this thread so far."""
    llm_tokens: int = 0
    """LLM tokens in this thread so far."""
    status: str = "running"
    """done, waiting_approval or failed."""
    outcome: str | None = None
    """The answer, or why the run stopped."""
    pending_approval: dict[str, Any] | None = None
    """The approval request when waiting."""
    observations: list[dict[str, Any]] = Field(default_factory=list)
    """Tool results."""
    latency_ms: float = 0.0
    """Wall time of this invocation."""
    resumable: bool = False
    """True when the run stopped mid-graph (an error, e.g. the store was down): ``retry`` continues it."""
    needs_input: list[str] = Field(default_factory=list)
    """Fields the answer asked the user for, or to confirm (``needs_confirmation``); the
    next message on the thread supplies or confirms them."""
    needs_confirmation: bool = False
    """The answer asks the user to confirm fields nobody was confident about: a yes runs
    the request with them, anything else is read as a correction."""
    internal_error: str | None = Field(default=None, exclude=True)
    """The error that stopped the run, in full (for the operator: the CLI prints it; it is
    never serialised, so the HTTP API cannot send it)."""


class AgentRuntime:
    """A compiled agent with its saver and ledger."""

    def __init__(
        self,
        compiled: Any,
        parts: AgentParts | None,
        ledger: Ledger,
        settings: Settings,
        name: str = "",
    ) -> None:
        self.name = name
        """Graph name stamped on traces."""
        self.graph = compiled
        self.parts = parts
        self.ledger = ledger
        self.settings = settings
        self._own_store: IdempotencyStore | None = None

    @classmethod
    @contextmanager
    def open(
        cls,
        module: str,
        *,
        settings: Settings | None = None,
        llm: BaseChatModel | None = None,
        slm_roles: bool = True,
    ) -> Iterator[AgentRuntime]:
        """Open ``module``'s graph on the configured database (run ``agentflow setup`` first)."""
        settings = settings or Settings()
        mod = load_graph_module(module)
        ledger = Ledger.from_settings(settings)
        with ExitStack() as stack:
            saver = stack.enter_context(open_saver(settings.resolved_database_url))
            if hasattr(mod, "build"):
                builder, parts = mod.build(
                    settings=settings, llm=llm, slm_roles=slm_roles, recorder=ledger
                )
            else:
                builder, parts = mod.graph.builder, None
            name = Path(module).stem if module.endswith(".py") else module.rsplit(".", 1)[-1]
            yield cls(builder.compile(checkpointer=saver), parts, ledger, settings, name)
            ledger.close()

    def _invoke(self, thread_id: str, payload: Any) -> RunResult:
        """Invoke the graph once on ``thread_id``, traced when Langfuse is configured.

        The trace id derives from the thread id, so a resumed run continues its trace;
        decisions go to the ledger and, when tracing is on, to Langfuse as well. An error
        stops the run at its last checkpoint and is reported as a resumable failure.
        """
        run_id = uuid.uuid4().hex
        start = time.perf_counter()
        with tracing_session(
            self.settings, thread_id=thread_id, run_id=run_id, graph=self.name
        ) as trace:
            configurable: dict[str, Any] = {"thread_id": thread_id, "run_id": run_id}
            if trace.enabled:
                configurable.update(
                    recorder=FanOutRecorder(self.ledger, trace.recorder), trace_id=trace.trace_id
                )
            config = {
                "configurable": configurable,
                "callbacks": trace.callbacks,
                "recursion_limit": 60,
            }
            try:
                # "sync": a step's checkpoint is on disk before the next step starts, so a
                # process killed inside a tool (after its effect) resumes after the steps
                # that led there, not before them.
                self.graph.invoke(payload, config, durability="sync")
            except Exception as exc:  # the checkpoint keeps the run: report, don't lose it
                res = self.result(thread_id, (time.perf_counter() - start) * 1000)
                ref = uuid.uuid4().hex[:12]
                _log.error(
                    "run %s on thread %s stopped (ref %s)", run_id, thread_id, ref, exc_info=exc
                )
                outcome = (
                    f"stopped by an internal error ({type(exc).__name__}, ref {ref}); the run is "
                    "kept at its last checkpoint: retry it once the cause is fixed"
                )
                update = {
                    "status": "failed",
                    "outcome": outcome,
                    "internal_error": f"{type(exc).__name__}: {exc}",
                }
                return res.model_copy(update=update)
        return self.result(thread_id, (time.perf_counter() - start) * 1000)

    def result(self, thread_id: str, latency_ms: float = 0.0) -> RunResult:
        """The thread's current state as a :class:`RunResult`."""
        snapshot = self.graph.get_state({"configurable": {"thread_id": thread_id}})
        values = snapshot.values or {}
        pending = self._pending(snapshot)
        status = "waiting_approval" if pending else values.get("status", "running")
        # A task can have finished (its writes are saved) without the checkpoint after it:
        # the process died in the next step. ``next`` is empty then, but the run is not over.
        unfinished = bool(snapshot.next or snapshot.tasks)
        if not pending and unfinished:
            status = "failed"  # stopped mid-graph by an error: resumable with `resume`
        awaiting = values.get("awaiting") or {}
        return RunResult(
            thread_id=thread_id,
            route=values.get("route"),
            decisions=values.get("decisions", []),
            llm_calls=values.get("llm_calls", 0),
            llm_tokens=values.get("llm_tokens", 0),
            status=status,
            outcome=values.get("outcome"),
            pending_approval=pending.model_dump(mode="json") if pending else None,
            observations=values.get("observations", []),
            latency_ms=latency_ms,
            resumable=unfinished and not pending,
            needs_input=list(awaiting.get("missing") or awaiting.get("confirm") or []),
            needs_confirmation=bool(awaiting.get("confirm")),
        )

    @staticmethod
    def _pending(snapshot: Any) -> ApprovalRequest | None:
        for task in snapshot.tasks or ():
            for intr in task.interrupts or ():
                return ApprovalRequest.model_validate(intr.value)
        return None

    def run(
        self,
        message: str,
        *,
        thread_id: str | None = None,
        customer: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> RunResult:
        """Start a run on a new (or given) thread with one user message.

        ``message_id`` names the turn (tool keys and approval ids derive from it): a
        submission replayed with the same id is the same turn, never a second one.
        Raises :class:`UnfinishedRunError` for a thread whose last run stopped mid-graph:
        retry it first, so the step it stopped at finishes under its own key.
        """
        if thread_id is not None:
            snapshot = self.graph.get_state({"configurable": {"thread_id": thread_id}})
            if (snapshot.next or snapshot.tasks) and self._pending(snapshot) is None:
                raise UnfinishedRunError(
                    f"thread {thread_id!r} has a run that stopped before {list(snapshot.next)}"
                )
        thread_id = thread_id or f"t_{uuid.uuid4().hex[:12]}"
        inputs: dict[str, Any] = {
            "messages": [HumanMessage(message, id=message_id)],
            "status": "running",
            "customer": customer or {},
        }
        return self._invoke(thread_id, inputs)

    def pending(self, thread_id: str) -> ApprovalRequest | None:
        """The approval the thread waits for, if any."""
        return self._pending(self.graph.get_state({"configurable": {"thread_id": thread_id}}))

    def pending_all(self) -> list[ApprovalRequest]:
        """Pending approvals across every thread in the checkpoint database."""
        saver = self.graph.checkpointer
        threads = dict.fromkeys(c.config["configurable"]["thread_id"] for c in saver.list(None))
        return [p for t in threads if (p := self.pending(t)) is not None]

    def has_message(self, thread_id: str, message_id: str) -> bool:
        """True when the thread's state holds the message ``message_id`` (its turn began)."""
        values = self.graph.get_state({"configurable": {"thread_id": thread_id}}).values or {}
        return any(getattr(m, "id", None) == message_id for m in values.get("messages") or ())

    @property
    def store(self) -> IdempotencyStore:
        """The idempotency store the graph's executor uses (grants and claims live there)."""
        return self._store()

    def _store(self) -> IdempotencyStore:
        """The idempotency store the graph's executor uses (grants live there)."""
        store = self.parts.executor.store if self.parts else None
        if isinstance(store, IdempotencyStore):
            return store
        if self._own_store is None:
            self._own_store = IdempotencyStore.from_settings(self.settings)
        return self._own_store

    def answer(self, thread_id: str, answer: ApprovalAnswer) -> RunResult:
        """Apply an approval answer; a refused answer raises and changes nothing but the ledger."""
        request = self.pending(thread_id)
        try:
            if request is None:
                raise UnknownApprovalError(f"thread {thread_id!r} has no pending approval")
            tools = self.parts.tools if self.parts else None
            # The approver was authenticated by our caller (the CLI's --by, the API's
            # token): the answer becomes the approval's one answer and, if it approves,
            # the grant the executor will consume.
            accept_answer(
                self._store(), request, answer, tools, ttl_s=self.settings.approval_ttl_seconds
            )
        except Exception as exc:
            self.ledger.approval(
                RunContext(thread_id=thread_id, run_id="", node="approval"),
                ApprovalRecord(
                    approval_id=answer.approval_id,
                    tool=request.tool if request else "",
                    digest=answer.digest,
                    decision="refused",
                    approver=answer.approver,
                    # Our own refusals say why; anything else (a store or database error)
                    # is named by its kind only: the ledger is shown to API callers.
                    reason=(exc.message if isinstance(exc, ApprovalError) else type(exc).__name__)[
                        :500
                    ],
                ),
            )
            raise
        return self._invoke(thread_id, Command(resume=answer.model_dump(mode="json")))

    def retry(self, thread_id: str) -> RunResult:
        """Continue a thread that stopped on an error (e.g. the store was down)."""
        return self._invoke(thread_id, None)
