"""Langfuse tracing: one trace per thread, one observation per decision.

:func:`tracing_session` wraps one run (an invocation or a resumption of a thread). With
Langfuse keys configured it opens a root observation whose trace id is *derived from
the thread id*, so a resumed run lands in the same trace; it hands back the LangChain
callback handler to pass in LangGraph's ``config["callbacks"]`` (LLM calls and node
runs) and a :class:`LangfuseRecorder` that turns every decision, tool call and approval
into its own observation in that trace. Without keys it yields a no-op session and
imports nothing from Langfuse or OpenTelemetry.

Each decision observation carries role, value, confidence, source, escalated, latency,
model and calibrated twice: as Langfuse metadata (what the Langfuse UI shows) and as
raw ``agentflow.*`` span attributes (what any OpenTelemetry backend can query).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentflow.decision import Decision
from agentflow.recording import (
    ApprovalRecord,
    LlmCallRecord,
    NullRecorder,
    Recorder,
    RunContext,
    ToolCallRecord,
)
from agentflow.settings import Settings

if TYPE_CHECKING:
    from langfuse import Langfuse

__all__ = ["LangfuseRecorder", "TracingSession", "trace_id_for", "tracing_session"]

_log = logging.getLogger(__name__)

_TOOL_LEVELS: dict[str, str] = {
    "failed": "ERROR",
    "outcome_unknown": "ERROR",
    "refused": "WARNING",
    "needs_approval": "WARNING",
    "in_flight": "WARNING",
}
"""Langfuse level of a tool observation by outcome; anything else is DEFAULT."""


def trace_id_for(thread_id: str) -> str:
    """The trace id of a thread: the same every run, so resumptions continue its trace.

    Identical to ``Langfuse.create_trace_id(seed=thread_id)`` (first 16 bytes of the
    seed's sha256, hex), computed here so that callers need not import Langfuse.
    """
    return hashlib.sha256(thread_id.encode("utf-8")).digest()[:16].hex()


def _jsonable(value: Any) -> Any:
    from pydantic_core import to_jsonable_python

    return to_jsonable_python(value, fallback=str)


def _attr(value: Any) -> str | bool | int | float:
    """An OpenTelemetry attribute value (primitives as they are, the rest as JSON)."""
    if isinstance(value, str | bool | int | float):
        return value
    return json.dumps(_jsonable(value), sort_keys=True)


class LangfuseRecorder:
    """A ``Recorder`` writing each record as a Langfuse observation.

    Observations are children of the current OpenTelemetry span when it belongs to the
    record's trace (a node running under the LangChain callback handler); otherwise of
    ``parent_span_id`` in ``trace_id`` (the run's root), or of ``ctx.trace_id``.
    """

    def __init__(
        self, client: Langfuse, *, trace_id: str | None = None, parent_span_id: str | None = None
    ) -> None:
        """Record through ``client``, by default into ``trace_id`` under ``parent_span_id``."""
        self.client = client
        self.trace_id = trace_id
        self.parent_span_id = parent_span_id

    def _trace_context(self, ctx: RunContext) -> dict[str, str] | None:
        from opentelemetry import trace as otel_trace

        wanted = ctx.trace_id or self.trace_id
        current = otel_trace.get_current_span().get_span_context()
        if current.is_valid and (wanted is None or f"{current.trace_id:032x}" == wanted):
            return None  # nest under the span that is running now
        if wanted is None:
            return None  # no trace known: Langfuse starts a new one
        context = {"trace_id": wanted}
        if wanted == self.trace_id and self.parent_span_id:
            context["parent_span_id"] = self.parent_span_id
        return context

    def _observe(
        self,
        ctx: RunContext,
        *,
        name: str,
        as_type: str,
        attributes: dict[str, Any],
        **observation: Any,
    ) -> None:
        from opentelemetry import trace as otel_trace

        run = {"thread_id": ctx.thread_id, "run_id": ctx.run_id, "graph": ctx.graph}
        if ctx.node:
            run["node"] = ctx.node
        try:
            with self.client.start_as_current_observation(  # type: ignore[call-overload]
                trace_context=self._trace_context(ctx), name=name, as_type=as_type, **observation
            ):
                span = otel_trace.get_current_span()
                span.set_attributes(
                    {f"agentflow.{k}": _attr(v) for k, v in {**run, **attributes}.items()}
                )
        except Exception:
            # Tracing is observability, not the audit trail (the ledger is): a tracing
            # failure is logged loudly but must never change what the agent does.
            _log.exception("could not record %s for thread %s in Langfuse", name, ctx.thread_id)

    def decision(self, ctx: RunContext, decision: Decision[Any]) -> None:
        """One observation ``decision:<role>`` carrying the decision's audit fields."""
        fields = {
            "role": decision.role,
            "value": _jsonable(decision.value),
            "confidence": decision.confidence,
            "source": decision.source,
            "escalated": decision.escalated,
            "latency_ms": decision.latency_ms,
            "model": decision.model.name if decision.model else "",
            "model_sha256": (decision.model.sha256 or "") if decision.model else "",
            "calibrated": decision.calibrated,
        }
        self._observe(
            ctx,
            name=f"decision:{decision.role}",
            as_type="span",
            attributes=fields,
            input=_jsonable(decision.input),
            output=_jsonable(decision.value),
            metadata={**fields, "rationale": decision.rationale, "scores": decision.scores},
            level="WARNING" if decision.escalated else None,
        )

    def llm_call(self, ctx: RunContext, record: LlmCallRecord) -> None:
        """One observation ``llm:<purpose>`` with tokens, latency and estimated cost.

        A span, not a generation: the callback handler already reports the chat model
        call itself as a generation, and two generations would count its cost twice.
        """
        fields = record.model_dump()
        self._observe(
            ctx, name=f"llm:{record.purpose}", as_type="span", attributes=fields, metadata=fields
        )

    def tool_call(self, ctx: RunContext, record: ToolCallRecord) -> None:
        """One ``tool`` observation ``tool:<name>`` with its class, key and outcome."""
        fields = {
            "tool": record.tool,
            "consequence": record.consequence,
            "outcome": record.outcome,
            "idempotency_key": record.idempotency_key or "",
            "latency_ms": record.latency_ms,
        }
        self._observe(
            ctx,
            name=f"tool:{record.tool}",
            as_type="tool",
            attributes=fields,
            input=_jsonable(record.args),
            output={"outcome": record.outcome, "error": record.error},
            metadata=fields,
            level=_TOOL_LEVELS.get(record.outcome),
            status_message=record.error,
        )

    def approval(self, ctx: RunContext, record: ApprovalRecord) -> None:
        """One ``guardrail`` observation ``approval:<tool>`` with the answer and who gave it."""
        fields = {
            "approval_id": record.approval_id,
            "tool": record.tool,
            "digest": record.digest,
            "decision": record.decision,
            "approver": record.approver or "",
        }
        self._observe(
            ctx,
            name=f"approval:{record.tool}",
            as_type="guardrail",
            attributes=fields,
            input=_jsonable(record.payload),
            output={"decision": record.decision, "reason": record.reason},
            metadata=fields,
            level="WARNING" if record.decision == "refused" else None,
        )


@dataclass
class TracingSession:
    """What a run needs for tracing: a recorder, LangGraph callbacks and the trace id."""

    thread_id: str
    """The thread being run."""
    run_id: str
    """This invocation or resumption."""
    graph: str
    """Graph module or name."""
    recorder: Recorder = field(default_factory=NullRecorder)
    """Where nodes send decisions, LLM/tool calls and approvals for the trace."""
    callbacks: list[Any] = field(default_factory=list)
    """For ``config["callbacks"]``: the Langfuse LangChain handler, or empty when off."""
    trace_id: str | None = None
    """The thread's trace id (None when tracing is off)."""
    client: Langfuse | None = None
    """The Langfuse client (None when tracing is off)."""

    @property
    def enabled(self) -> bool:
        """True when this session sends traces to Langfuse."""
        return self.client is not None

    @property
    def trace_url(self) -> str | None:
        """Link to the trace in the Langfuse UI (asks the server for the project id)."""
        if self.client is None or self.trace_id is None:
            return None
        return self.client.get_trace_url(trace_id=self.trace_id)

    def run_context(self, node: str = "") -> RunContext:
        """The ``RunContext`` for a record made by ``node`` in this run."""
        return RunContext(
            thread_id=self.thread_id,
            run_id=self.run_id,
            graph=self.graph,
            node=node,
            trace_id=self.trace_id,
        )


@contextmanager
def tracing_session(
    settings: Settings, *, thread_id: str, run_id: str, graph: str
) -> Iterator[TracingSession]:
    """Trace one run of ``thread_id`` to Langfuse when ``settings.tracing_enabled``.

    Everything inside the block (callbacks, recorder) lands in the thread's trace under
    a root observation for this run; the client is flushed on exit, even on error. With
    tracing off, the session records nothing and costs nothing.
    """
    if not settings.tracing_enabled:
        yield TracingSession(thread_id=thread_id, run_id=run_id, graph=graph)
        return

    from langfuse import Langfuse, propagate_attributes
    from langfuse.langchain import CallbackHandler

    public_key = settings.langfuse_public_key
    secret = settings.langfuse_secret_key
    client = Langfuse(
        public_key=public_key,
        secret_key=secret.get_secret_value() if secret else None,
        base_url=settings.langfuse_base_url,
    )
    trace_id = trace_id_for(thread_id)
    try:
        with (
            client.start_as_current_observation(
                trace_context={"trace_id": trace_id},
                name=f"run:{graph}" if graph else "run",
                as_type="agent",
                input={"thread_id": thread_id, "run_id": run_id},
                metadata={"thread_id": thread_id, "run_id": run_id, "graph": graph},
            ) as root,
            propagate_attributes(session_id=thread_id, trace_name=graph or None),
        ):
            parent = {"trace_id": trace_id, "parent_span_id": root.id}
            yield TracingSession(
                thread_id=thread_id,
                run_id=run_id,
                graph=graph,
                recorder=LangfuseRecorder(client, trace_id=trace_id, parent_span_id=root.id),
                callbacks=[CallbackHandler(public_key=public_key, trace_context=parent)],  # type: ignore[arg-type]
                trace_id=trace_id,
                client=client,
            )
    finally:
        client.flush()
