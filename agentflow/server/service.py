"""What the HTTP API does, without HTTP: runs, thread views, pending approvals, answers.

One :class:`AgentService` wraps one open :class:`~agentflow.runtime.AgentRuntime`.
Requests that change a thread (a run, an answer) hold that thread's lock (answers from
other processes are settled by the store: the first accepted answer wins). Reads take no
lock. A thread belongs to the identity that started it (``state.customer.principal``,
which only this service writes): others are told it does not exist, approvers see all.
"""

from __future__ import annotations

import logging
import threading
import uuid
import zlib
from typing import Any

from langchain_core.messages import HumanMessage

from agentflow.errors import AgentflowError, ApprovalError, LedgerError
from agentflow.recording import ApprovalRecord, RunContext
from agentflow.runtime import AgentRuntime, RunResult
from agentflow.server.auth import AuthRefusal, Identity
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
    def _first_request(values: dict[str, Any]) -> str | None:
        for message in values.get("messages") or ():
            if isinstance(message, HumanMessage):
                return str(message.content)
        return None

    @staticmethod
    def _owner(values: dict[str, Any]) -> str | None:
        owner = (values.get("customer") or {}).get("principal")
        return owner if isinstance(owner, str) else None

    def _visible(self, values: dict[str, Any], who: Identity) -> bool:
        return "approve" in who.scopes or self._owner(values) == who.name

    # --- reads -------------------------------------------------------------------

    def thread(self, thread_id: str, who: Identity) -> ThreadView:
        """The thread's state, decisions, recorded approvals and trace link, if ``who`` may see it."""
        snapshot = self._snapshot(thread_id)
        if snapshot.created_at is None or not self._visible(snapshot.values or {}, who):
            raise UnknownThreadError(f"there is no thread {thread_id!r}")
        result = self.runtime.result(thread_id)
        approvals = [
            row.model_dump(mode="json")
            for row in self.runtime.ledger.approvals(thread_id=thread_id)
        ]
        return ThreadView(
            **result.model_dump(),
            graph=self.name,
            request=self._first_request(snapshot.values or {}),
            approvals=approvals,
            trace_url=self.trace_links(thread_id),
        )

    def pending(self, who: Identity) -> list[PendingApproval]:
        """The actions waiting for a human that ``who`` may see, with what led to them."""
        out = []
        for request in self.runtime.pending_all():
            values = self._snapshot(request.thread_id).values or {}
            if not self._visible(values, who):
                continue
            out.append(
                PendingApproval(
                    **request.model_dump(mode="json"),
                    graph=self.name,
                    approval_valid_s=self.runtime.settings.approval_ttl_seconds,
                    route=values.get("route"),
                    decisions=values.get("decisions") or [],
                    trace_url=self.trace_links(request.thread_id),
                )
            )
        return out

    # --- changes -----------------------------------------------------------------

    def run(self, body: RunRequest, who: Identity) -> RunResult:
        """Run the graph on one message for ``who`` (a thread waiting for approval is refused)."""
        if body.graph is not None and body.graph != self.name:
            raise UnknownGraphError(
                f"this server does not serve a graph named {body.graph!r}",
                hint=f"omit 'graph' or use {self.name!r}; start another server for other graphs "
                "(`agentflow serve --graph PATH`)",
            )
        thread_id = body.thread_id or f"t_{uuid.uuid4().hex[:12]}"
        with self._lock(thread_id):
            snapshot = self._snapshot(thread_id)
            if body.thread_id is not None and (
                snapshot.created_at is None or self._owner(snapshot.values or {}) != who.name
            ):
                # Not even an approver writes into someone else's conversation; and the
                # same answer for a thread that does not exist says nothing of which do.
                raise UnknownThreadError(f"there is no thread {thread_id!r} of yours")
            waiting = self.runtime.pending(thread_id)
            if waiting is not None:
                raise ThreadBusyError(
                    f"thread {thread_id!r} is waiting for approval {waiting.approval_id} ({waiting.tool})",
                    hint=f"answer it first (POST /approvals/{thread_id}) or start a new thread",
                )
            return self.runtime.run(body.message, thread_id=thread_id, customer=who.principal)

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
        self,
        thread_id: str,
        refusal: AuthRefusal,
        identity: Identity | None = None,
        body: AnswerRequest | None = None,
    ) -> None:
        """Record an answer refused before the runtime saw it, under whoever is proven.

        With no authenticated ``identity``, or on a thread it may not see, nothing is
        written (only logged): a ledger row names who did something, on a thread of theirs.
        """
        reason = f"{refusal.status}: {refusal.message}"
        if identity is None:
            _log.warning("unauthenticated approval answer on thread %s: %s", thread_id, reason)
            return
        try:
            snapshot = self._snapshot(thread_id)
            visible = snapshot.created_at is not None and self._visible(
                snapshot.values or {}, identity
            )
            pending = self.runtime.pending(thread_id) if visible else None
        except Exception:  # an odd thread id must not stop the refusal from being logged
            visible, pending = False, None
        if not visible:
            # Nobody writes rows into a thread they cannot see, not even refusals.
            _log.warning("refused answer by %s on thread %s: %s", identity.name, thread_id, reason)
            return
        record = ApprovalRecord(
            approval_id=(body.approval_id if body else None)
            or (pending.approval_id if pending else ""),
            tool=pending.tool if pending else "",
            digest=body.digest if body else "",
            decision="refused",
            approver=identity.name,
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
