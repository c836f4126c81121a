"""What the HTTP API does, without HTTP: runs, thread views, pending approvals, answers.

One :class:`AgentService` wraps one open :class:`~agentflow.runtime.AgentRuntime`.
Requests that change a thread (a run, an answer) hold that thread's lock, so two
approvers clicking at once cannot both resume it: the second finds nothing pending and
is refused. Reads take no lock. Every refused answer is recorded in the ledger,
including those refused here before they reach the runtime (no or a wrong token).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
import zlib
from typing import Any

from langchain_core.messages import HumanMessage

from agentflow.errors import AgentflowError, ApprovalError, LedgerError
from agentflow.recording import ApprovalRecord, RunContext
from agentflow.runtime import AgentRuntime, RunResult
from agentflow.server.schemas import AnswerRequest, PendingApproval, RunRequest, ThreadView
from agentflow.server.traces import TraceLinker
from nodes.approval import ApprovalAnswer

__all__ = ["AgentService", "ThreadBusyError", "UnknownGraphError", "UnknownThreadError"]

_STRIPES = 64
"""Per-thread locks are striped: bounded memory, and distinct threads rarely share one."""

_log = logging.getLogger(__name__)


class UnknownThreadError(AgentflowError):
    """No thread with that id exists in the checkpoint database."""

    default_hint = "start one with POST /runs, or list waiting threads with GET /approvals"


class UnknownGraphError(AgentflowError):
    """The request names a graph this server does not serve."""


class ThreadBusyError(ApprovalError):
    """A new message was sent to a thread that is waiting for an approval."""


class AgentService:
    """The API's operations on one graph's runtime."""

    def __init__(self, runtime: AgentRuntime, name: str, trace_links: TraceLinker) -> None:
        """Serve ``runtime`` under the graph name ``name``, linking traces with ``trace_links``."""
        self.runtime = runtime
        self.name = name
        self.trace_links = trace_links
        self._locks = [threading.Lock() for _ in range(_STRIPES)]

    def _lock(self, thread_id: str) -> threading.Lock:
        return self._locks[zlib.crc32(thread_id.encode()) % _STRIPES]

    def _snapshot(self, thread_id: str) -> Any:
        return self.runtime.graph.get_state({"configurable": {"thread_id": thread_id}})

    @staticmethod
    def _request_text(values: dict[str, Any]) -> str | None:
        for message in values.get("messages") or ():
            if isinstance(message, HumanMessage):
                return str(message.content)
        return None

    # --- reads -------------------------------------------------------------------

    def thread(self, thread_id: str) -> ThreadView:
        """The thread's state, decisions, recorded approvals and trace link."""
        snapshot = self._snapshot(thread_id)
        if snapshot.created_at is None:
            raise UnknownThreadError(f"there is no thread {thread_id!r}")
        result = self.runtime.result(thread_id)
        approvals = [
            row.model_dump(mode="json")
            for row in self.runtime.ledger.approvals(thread_id=thread_id)
        ]
        return ThreadView(
            **result.model_dump(),
            graph=self.name,
            request=self._request_text(snapshot.values or {}),
            approvals=approvals,
            trace_url=self.trace_links(thread_id),
        )

    def pending(self) -> list[PendingApproval]:
        """Every action waiting for a human, with the decisions that led to it."""
        out = []
        for request in self.runtime.pending_all():
            values = self._snapshot(request.thread_id).values or {}
            out.append(
                PendingApproval(
                    **request.model_dump(mode="json"),
                    graph=self.name,
                    request=self._request_text(values),
                    route=values.get("route"),
                    decisions=values.get("decisions") or [],
                    trace_url=self.trace_links(request.thread_id),
                )
            )
        return out

    # --- changes -----------------------------------------------------------------

    def run(self, body: RunRequest) -> RunResult:
        """Run the graph on one message (a thread waiting for approval is refused)."""
        if body.graph is not None and body.graph != self.name:
            raise UnknownGraphError(
                f"this server does not serve a graph named {body.graph!r}",
                hint=f"omit 'graph' or use {self.name!r}; start another server for other graphs "
                "(`agentflow serve --graph PATH`)",
            )
        thread_id = body.thread_id or f"t_{uuid.uuid4().hex[:12]}"
        with self._lock(thread_id):
            waiting = self.runtime.pending(thread_id)
            if waiting is not None:
                raise ThreadBusyError(
                    f"thread {thread_id!r} is waiting for approval {waiting.approval_id} ({waiting.tool})",
                    hint=f"answer it first (POST /approvals/{thread_id}) or start a new thread",
                )
            return self.runtime.run(body.message, thread_id=thread_id, customer=body.customer)

    def answer(self, thread_id: str, approver: str, body: AnswerRequest) -> RunResult:
        """Apply ``approver``'s answer; a refused one raises and changes nothing but the ledger."""
        answer = ApprovalAnswer(
            approval_id=body.approval_id,
            decision=body.decision,
            approver=approver,
            digest=body.digest,
            args=body.args,
            tool=body.tool,
            message=body.message,
        )
        with self._lock(thread_id):
            return self.runtime.answer(thread_id, answer)

    def record_refusal(
        self, thread_id: str, raw_body: bytes, reason: str, approver: str | None = None
    ) -> None:
        """Record an answer refused before the runtime saw it (bad token, impersonation)."""
        try:
            claimed = json.loads(raw_body)
        except (ValueError, UnicodeDecodeError):
            claimed = None
        claimed = claimed if isinstance(claimed, dict) else {}
        try:
            pending = self.runtime.pending(thread_id)
        except Exception:  # an odd thread id must not stop the refusal from being recorded
            pending = None
        who = approver or (
            claimed.get("approver") if isinstance(claimed.get("approver"), str) else None
        )
        record = ApprovalRecord(
            approval_id=str(claimed.get("approval_id") or (pending.approval_id if pending else ""))[
                :200
            ],
            tool=pending.tool if pending else "",
            digest=str(claimed.get("digest") or "")[:200],
            decision="refused",
            approver=who,
            reason=reason[:500],
            payload=pending.model_dump(mode="json") if pending else {},
        )
        ctx = RunContext(thread_id=thread_id, run_id="", graph=self.name, node="server")
        try:
            self.runtime.ledger.approval(ctx, record)
        except LedgerError:
            # The answer is refused either way; a ledger that cannot take the record is
            # an operational alarm, not a reason to let the request through.
            _log.exception("could not record a refused approval answer on thread %s", thread_id)
