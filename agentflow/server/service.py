"""What the HTTP API does, without HTTP: runs, thread views, pending approvals, answers.

One :class:`AgentService` wraps one open :class:`~agentflow.runtime.AgentRuntime`. Any
number of worker processes may serve the same database and store: a request that moves
a thread (a run, an answer, a recovery) holds that thread's claim in the store
(:mod:`agentflow.server.claims`), so no per-process lock decides anything; reads take no
claim. A submission with an ``Idempotency-Key`` runs once whichever worker gets its
retries. A thread belongs to the identity that started it (``state.customer.principal``,
which only this service writes): others are told it does not exist, approvers see all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from langchain_core.messages import HumanMessage

from agentflow.errors import (
    AgentflowError,
    ApprovalError,
    KeyInFlightError,
    KeyMismatchError,
    LedgerError,
)
from agentflow.nodes.approval import ApprovalAnswer
from agentflow.recording import ApprovalRecord, RunContext
from agentflow.runtime import AgentRuntime, RunResult
from agentflow.server.auth import AuthRefusal, Identity
from agentflow.server.claims import Claims, Submission
from agentflow.server.schemas import AnswerRequest, PendingApproval, RunRequest, ThreadView
from agentflow.server.traces import TraceLinker

__all__ = ["AgentService", "ThreadBusyError", "UnknownGraphError", "UnknownThreadError"]

_BACKGROUND_RUNS = 8
"""Runs one worker carries on after answering 202 (more wait in its queue)."""

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
        self.claims = Claims(runtime.store)
        """Thread claims, submission keys and unfinished runs, shared with every worker."""
        self._background = ThreadPoolExecutor(_BACKGROUND_RUNS, thread_name_prefix="run")

    def close(self) -> None:
        """Let the runs this worker carries on finish (the server is shutting down)."""
        self._background.shutdown(wait=True)

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
        if snapshot.created_at is None:
            return self._accepted(thread_id, who)
        if not self._visible(snapshot.values or {}, who):
            raise UnknownThreadError(f"there is no thread {thread_id!r}")
        result = self._current(thread_id)
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

    def _accepted(self, thread_id: str, who: Identity) -> ThreadView:
        """A run accepted (202) whose first checkpoint is not written yet: still running."""
        noted = self.claims.pending_input(thread_id)
        payload = json.loads(noted) if noted else {}
        owner = (payload.get("customer") or {}).get("principal")
        if not payload.get("message") or not self._visible({"customer": {"principal": owner}}, who):
            raise UnknownThreadError(f"there is no thread {thread_id!r}")
        return ThreadView(
            thread_id=thread_id,
            status="running",
            graph=self.name,
            request=payload["message"],
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

    def _current(self, thread_id: str) -> RunResult:
        """The thread's result; ``running`` while a worker holds it (mid-graph is not failed)."""
        result = self.runtime.result(thread_id)
        if result.status == "failed" and result.resumable and self.claims.thread_busy(thread_id):
            return result.model_copy(update={"status": "running", "outcome": None})
        return result

    def submit(
        self, body: RunRequest, who: Identity, *, key: str | None = None, wait: bool = True
    ) -> tuple[RunResult, bool]:
        """Run the graph on one message for ``who``; (result, replayed).

        With ``key`` (an ``Idempotency-Key``), a retry of the same submission is answered
        with the first one's thread (``replayed``), another body under the key is refused
        (:class:`KeyMismatchError`), and a retry while the first is still held gets
        :class:`KeyInFlightError`. Without ``wait`` the run goes on after the answer, whose
        status is ``running``; recovery finishes it if this worker dies.
        """
        self._check_graph(body)
        if key is None:
            thread_id = body.thread_id or f"t_{uuid.uuid4().hex[:12]}"
            # Named here, not by LangGraph: recovery tells a taken message from one not yet.
            message_id = f"m_{uuid.uuid4().hex[:24]}"
            return self._start(thread_id, body, who, message_id, wait, None), False
        found = self.claims.submission(who.name, key, body.model_dump(mode="json"))
        status = found.begin.status
        if status == "mismatch":
            raise KeyMismatchError(
                "this Idempotency-Key was used for another request",
                hint="use a new key for a new request; a retry must send the same body",
            )
        if status == "in_flight":
            raise KeyInFlightError(
                "the first submission with this Idempotency-Key is still being handled",
                retry_after_s=found.begin.retry_after_s,
            )
        if status == "completed" and found.thread_id is not None:
            return self._current(found.thread_id), True
        if not found.begin.holds_lease:
            raise KeyInFlightError("this Idempotency-Key is not usable right now")
        # One turn per submission: its message id (and so its tool keys and approval ids)
        # is the key's, so a retry after a worker died continues that turn, never repeats it.
        tag = hashlib.sha256(f"{who.name}\x1f{key}".encode()).hexdigest()
        thread_id = body.thread_id or f"t_{tag[:12]}"
        try:
            return self._start(thread_id, body, who, f"m_{tag[:24]}", wait, found), False
        except AgentflowError:
            self.claims.release_submission(found)  # refused before it ran: the key is free
            raise

    def _check_graph(self, body: RunRequest) -> None:
        if body.graph is not None and body.graph != self.name:
            raise UnknownGraphError(
                f"this server does not serve a graph named {body.graph!r}",
                hint=f"omit 'graph' or use {self.name!r}; start another server for other graphs "
                "(`agentflow serve --graph PATH`)",
            )

    def _start(
        self,
        thread_id: str,
        body: RunRequest,
        who: Identity,
        message_id: str,
        wait: bool,
        submission: Submission | None,
    ) -> RunResult:
        payload = {"message": body.message, "customer": who.principal, "message_id": message_id}
        with self.claims.thread(thread_id):
            if self.runtime.has_message(thread_id, message_id):
                # A retry of a submission whose worker died: its turn is on the thread.
                result = self._carry_on(thread_id, None)
            else:
                self._admit(thread_id, body, who)
                self.claims.started(thread_id, payload)
                if not wait:
                    result = self.runtime.result(thread_id).model_copy(
                        update={"status": "running", "outcome": None}
                    )
                else:
                    result = self._finish(
                        thread_id,
                        lambda: self.runtime.run(
                            body.message,
                            thread_id=thread_id,
                            customer=who.principal,
                            message_id=message_id,
                        ),
                    )
            if submission is not None and (wait or result.status != "running"):
                self.claims.settle_submission(submission, thread_id)
        if not wait and result.status == "running":
            if submission is not None:
                self.claims.settle_submission(submission, thread_id)
            self._background.submit(self._later, thread_id)
        return result

    def _admit(self, thread_id: str, body: RunRequest, who: Identity) -> None:
        """Refuse a message the thread cannot take (not the caller's, waiting for approval)."""
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

    def _later(self, thread_id: str) -> None:
        """Carry on a run accepted with 202 (in this worker's background)."""
        try:
            with self.claims.thread(thread_id):
                self._carry_on(thread_id, None)
        except KeyInFlightError:
            pass  # another worker has it; the unfinished-runs record covers the rest
        except Exception:  # the record stays: recovery tries it again
            _log.exception("background run on thread %s failed", thread_id)

    def _carry_on(self, thread_id: str, answer: ApprovalAnswer | None) -> RunResult:
        """Move a claimed thread on from wherever it is: its noted input not yet taken,
        a run stopped mid-graph, or an accepted answer not yet applied."""
        noted = self.claims.pending_input(thread_id)
        payload = json.loads(noted) if noted else {}
        snapshot = self._snapshot(thread_id)
        resume = payload.get("resume")
        pending = self.runtime.pending(thread_id)
        if pending is not None:
            if answer is None and resume and resume.get("approval_id") == pending.approval_id:
                answer = ApprovalAnswer.model_validate(resume)
            if answer is None:
                self.claims.finished(thread_id)  # waiting for a person is a final status
                return self.runtime.result(thread_id)
            return self._finish(thread_id, lambda: self.runtime.answer(thread_id, answer))
        if snapshot.next or snapshot.tasks:
            return self._finish(thread_id, lambda: self.runtime.retry(thread_id))
        message_id = payload.get("message_id")
        if payload.get("message") and not (
            message_id and self.runtime.has_message(thread_id, message_id)
        ):
            return self._finish(
                thread_id,
                lambda: self.runtime.run(
                    payload["message"],
                    thread_id=thread_id,
                    customer=payload.get("customer"),
                    message_id=message_id,
                ),
            )
        self.claims.finished(thread_id)
        return self.runtime.result(thread_id)

    def _finish(self, thread_id: str, move: Callable[[], RunResult]) -> RunResult:
        """Move the thread; a run that reached a final status leaves the unfinished runs."""
        result = move()
        if not result.resumable:
            self.claims.finished(thread_id)
        return result

    def recover(self, thread_id: str) -> RunResult | None:
        """Carry on an unfinished run nobody holds (its worker died); None if one does."""
        try:
            with self.claims.thread(thread_id):
                return self._carry_on(thread_id, None)
        except KeyInFlightError:
            return None

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
        with self.claims.thread(thread_id):
            # Noted first: should this worker die mid-resume, recovery applies the same
            # accepted answer (the store takes it again: it is the same answer).
            self.claims.started(thread_id, {"resume": answer.model_dump(mode="json")})
            try:
                return self._finish(thread_id, lambda: self.runtime.answer(thread_id, answer))
            except ApprovalError:
                # Refused: the thread is as it was. If that is mid-graph (an earlier answer
                # was taken and its worker died), it stays noted for recovery to finish.
                if not self.runtime.result(thread_id).resumable:
                    self.claims.finished(thread_id)
                raise

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
