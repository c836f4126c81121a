"""The operations the guarded executor's protocol yields, and how its drivers carry them out.

:class:`~agentflow.tools.executor.GuardedExecutor` writes the protocol once, as a generator of
:data:`Op` values (store operations and tool runs); :func:`perform` carries one out
synchronously and :func:`aperform` on the event loop. :class:`Finisher` builds and
records the result of one execution; :func:`settled` is that result when the store
handed out no lease.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_jsonable_python

from agentflow.consequence import ConsequenceClass
from agentflow.errors import (
    AgentflowError,
    KeyInFlightError,
    KeyMismatchError,
    OutcomeUnknownError,
    ToolError,
    ToolExecutionError,
)
from agentflow.recording import Recorder, RunContext, ToolCallRecord, ToolOutcome
from agentflow.tools.calls import ExecutionResult, ToolCall
from agentflow.tools.contract import ToolContext, ToolSpec
from agentflow.tools.journal import EffectEntry, EffectJournal, EffectOutcome
from agentflow.tools.leases import Lease, keep_lease
from agentflow.tools.store import AsyncIdempotencyStore, BeginResult, IdempotencyStore

__all__ = [
    "Begin",
    "Complete",
    "Durable",
    "Fail",
    "Finisher",
    "Journal",
    "Lease",
    "Lookup",
    "Op",
    "Peek",
    "Ran",
    "Recall",
    "Run",
    "Sleep",
    "aperform",
    "describe",
    "from_journal",
    "is_retryable",
    "journal",
    "perform",
    "settled",
]


@dataclass(frozen=True)
class Begin:
    """Ask the store for the lease on a key."""

    key: str
    """The idempotency key."""
    fp: str
    """Fingerprint of the tool and its arguments."""
    lease_s: float
    """How long the lease lasts."""
    reclaim: bool
    """Whether an expired lease may be taken over (re-run)."""
    grant: str | None = None
    """Approval grant key a new lease must consume (irreversible and unknown calls)."""


@dataclass(frozen=True)
class Recall:
    """Ask the store which class the consequence node kept for an action."""

    thread_id: str
    """The thread."""
    digest: str
    """The action digest (tool and canonical arguments)."""


@dataclass(frozen=True)
class Complete:
    """Store the output under the key (only while holding the lease)."""

    key: str
    """The idempotency key."""
    token: str
    """The lease token ``Begin`` handed out."""
    output: Any
    """The tool's output in JSON form."""


@dataclass(frozen=True)
class Fail:
    """Release the key (retryable) or keep it as failed."""

    key: str
    """The idempotency key."""
    token: str
    """The lease token ``Begin`` handed out."""
    error: str
    """Why the tool failed."""
    retryable: bool
    """Release the key (True) or keep it as failed (False)."""


@dataclass(frozen=True)
class Run:
    """Call the tool once."""

    spec: ToolSpec
    """The tool."""
    kwargs: dict[str, Any]
    """Validated arguments."""
    ctx: ToolContext
    """Key, thread, attempt and step handed to the tool."""
    lease: Lease | None = None
    """The lease to keep alive while the tool runs (None for calls without a key)."""


@dataclass(frozen=True)
class Durable:
    """Ask why the store can lose writes (None: it keeps them; :mod:`agentflow.tools.durability`)."""


@dataclass(frozen=True)
class Peek:
    """Ask the store what it holds for ``key`` without taking a lease."""

    key: str
    """The idempotency key."""


@dataclass(frozen=True)
class Lookup:
    """Ask the effects journal what ``key`` did (:mod:`agentflow.tools.journal`)."""

    key: str
    """The idempotency key."""


@dataclass(frozen=True)
class Journal:
    """Write ``key``'s outcome to the effects journal."""

    key: str
    """The idempotency key."""
    thread_id: str
    """Thread of the call."""
    tool: str
    """Tool name."""
    fingerprint: str
    """Digest of the call."""
    outcome: EffectOutcome
    """What happened."""
    result: Any = None
    """The result (``completed``)."""
    error: str | None = None
    """Why it failed, or why its outcome is unknown."""


def journal(sink: EffectJournal, op: Lookup | Journal) -> Any:
    """Carry out a journal op (synchronous: the ledger is a SQLAlchemy engine)."""
    if isinstance(op, Lookup):
        return sink.effect_of(op.key)
    sink.effect(
        op.key,
        thread_id=op.thread_id,
        tool=op.tool,
        fingerprint=op.fingerprint,
        outcome=op.outcome,
        result=op.result,
        error=op.error,
    )
    return None


def from_journal(
    done: Finisher, cls: ConsequenceClass, key: str, fp: str, entry: EffectEntry
) -> ExecutionResult:
    """The answer for a key the journal knows as completed, failed or outcome unknown."""
    if entry.fingerprint != fp:
        msg = str(KeyMismatchError(f"key {key} was used with other arguments"))
        return done(cls, "refused", key=key, error=msg, flagged=True)
    if entry.outcome == "completed":
        return done(cls, "replayed", key=key, output=entry.result)
    if entry.outcome == "failed":
        return done(cls, "failed", key=key, error=entry.error, flagged=True)
    msg = str(OutcomeUnknownError(f"a run under {key} ended without a result"))
    return done(cls, "outcome_unknown", key=key, error=entry.error or msg, flagged=True)


@dataclass(frozen=True)
class Sleep:
    """Back off before a retry."""

    seconds: float
    """How long."""


@dataclass(frozen=True)
class Ran:
    """What one tool call gave: an output or an error, and how long it took."""

    output: Any = None
    """The tool's return value (None when it raised)."""
    error: BaseException | None = None
    """What the tool raised, if it did."""
    latency_ms: float = 0.0
    """Wall time of the call."""


Op = Begin | Recall | Complete | Fail | Run | Sleep | Durable | Peek | Lookup | Journal
"""One step of the protocol, answered by :func:`perform` or :func:`aperform`."""


def describe(exc: BaseException) -> str:
    """The error text recorded for a failed call."""
    return str(exc) if isinstance(exc, ToolError) else f"{type(exc).__name__}: {exc}"


def is_retryable(exc: BaseException) -> bool:
    """The tool said a retry is safe (only ``ToolExecutionError(retryable=True)`` does)."""
    return isinstance(exc, ToolExecutionError) and exc.retryable


def perform(store: IdempotencyStore | AsyncIdempotencyStore | None, op: Op) -> Any:
    """Carry out ``op`` synchronously (a synchronous store; tool calls never raise)."""
    if isinstance(op, Run):
        call = lambda: op.spec.fn(**op.spec.bind(op.kwargs, op.ctx))  # noqa: E731
        if op.lease is None or not isinstance(store, IdempotencyStore):
            return _call(call)
        with keep_lease(store, op.lease):
            return _call(call)
    if isinstance(op, Sleep):
        time.sleep(op.seconds)
        return None
    assert isinstance(store, IdempotencyStore)  # the protocol only asks with a store
    if isinstance(op, Begin):
        return store.begin(op.key, op.fp, op.lease_s, reclaim=op.reclaim, grant=op.grant)
    if isinstance(op, Recall):
        return store.assessed(op.thread_id, op.digest)
    if isinstance(op, Peek):
        return store.peek(op.key)
    if isinstance(op, Durable):
        return store.durability_problem()
    if isinstance(op, Complete):
        return store.complete(op.key, op.token, op.output)
    assert isinstance(op, Fail), op  # journal ops go to the executor's journal
    return store.fail(op.key, op.token, op.error, retryable=op.retryable)


async def aperform(store: IdempotencyStore | AsyncIdempotencyStore | None, op: Op) -> Any:
    """Carry out ``op`` on the event loop (a sync store's calls go to a thread)."""
    if isinstance(op, Run):
        if op.lease is None or store is None:
            return await _acall(op)
        beat = asyncio.create_task(_abeat(store, op.lease))
        try:
            return await _acall(op)
        finally:
            beat.cancel()
    if isinstance(op, Sleep):
        await asyncio.sleep(op.seconds)
        return None
    if isinstance(store, IdempotencyStore):
        return await asyncio.to_thread(perform, store, op)
    assert store is not None
    if isinstance(op, Begin):
        return await store.begin(op.key, op.fp, op.lease_s, reclaim=op.reclaim, grant=op.grant)
    if isinstance(op, Recall):
        return await store.assessed(op.thread_id, op.digest)
    if isinstance(op, Peek):
        return await store.peek(op.key)
    if isinstance(op, Durable):
        return await store.durability_problem()
    if isinstance(op, Complete):
        return await store.complete(op.key, op.token, op.output)
    assert isinstance(op, Fail), op  # journal ops go to the executor's journal
    return await store.fail(op.key, op.token, op.error, retryable=op.retryable)


async def _abeat(store: IdempotencyStore | AsyncIdempotencyStore, lease: Lease) -> None:
    while True:
        await asyncio.sleep(lease.seconds / 3)
        try:
            if isinstance(store, IdempotencyStore):
                renewed = await asyncio.to_thread(
                    store.renew, lease.key, lease.token, lease.seconds
                )
            else:
                renewed = await store.renew(lease.key, lease.token, lease.seconds)
        except AgentflowError:
            return
        if not renewed:
            return


def _call(fn: Callable[[], Any]) -> Ran:
    started = time.perf_counter()
    try:
        output = fn()
    except Exception as exc:
        return Ran(error=exc, latency_ms=(time.perf_counter() - started) * 1000)
    return Ran(output=output, latency_ms=(time.perf_counter() - started) * 1000)


async def _acall(op: Run) -> Ran:
    spec, kwargs = op.spec, op.spec.bind(op.kwargs, op.ctx)
    started = time.perf_counter()
    try:
        if spec.afn is not None:
            output = await spec.afn(**kwargs)
        elif spec.is_async:
            output = await spec.fn(**kwargs)
        else:
            output = await asyncio.to_thread(spec.fn, **kwargs)
    except Exception as exc:
        return Ran(error=exc, latency_ms=(time.perf_counter() - started) * 1000)
    return Ran(output=output, latency_ms=(time.perf_counter() - started) * 1000)


class Finisher:
    """Builds the result of one execution and records it."""

    def __init__(self, recorder: Recorder | None, run: RunContext, call: ToolCall) -> None:
        self.recorder, self.run, self.call = recorder, run, call

    def record(
        self,
        cls: str,
        outcome: ToolOutcome,
        *,
        key: str | None,
        error: str | None,
        latency_ms: float,
    ) -> None:
        """Record one attempt or one call that did not run (when there is a recorder)."""
        if self.recorder is None:
            return
        self.recorder.tool_call(
            self.run,
            ToolCallRecord(
                tool=self.call.tool,
                args=self.call.args,
                idempotency_key=key,
                consequence=cls,
                outcome=outcome,
                error=error,
                latency_ms=latency_ms,
            ),
        )

    def __call__(
        self,
        cls: ConsequenceClass,
        status: ToolOutcome,
        *,
        ran: Ran | None = None,
        key: str | None = None,
        output: Any = None,
        error: str | None = None,
        attempts: int = 0,
        retryable: bool = False,
        flagged: bool = False,
    ) -> ExecutionResult:
        """The result of the execution, recorded; ``ran`` fills in output and error."""
        if ran is not None:
            output = to_jsonable_python(ran.output, fallback=repr) if ran.error is None else None
            error = error if ran.error is None else describe(ran.error)
        self.record(cls, status, key=key, error=error, latency_ms=ran.latency_ms if ran else 0.0)
        return ExecutionResult(
            status=status,
            output=output,
            error=error,
            key=key,
            consequence=cls,
            attempts=attempts,
            retryable=retryable,
            flagged=flagged,
        )


def settled(done: Finisher, cls: ConsequenceClass, begin: BeginResult) -> ExecutionResult:
    """The answer when the store did not hand out a lease."""
    key = begin.key
    if begin.status == "completed":
        return done(cls, "replayed", key=key, output=begin.result)
    if begin.status == "in_flight":
        msg = str(
            KeyInFlightError(f"another execution holds {key} for {begin.retry_after_s:.3f} s")
        )
        return done(cls, "in_flight", key=key, error=msg, retryable=True)
    if begin.status == "mismatch":
        msg = str(KeyMismatchError(f"key {key} was used with other arguments"))
        return done(cls, "refused", key=key, error=msg, flagged=True)
    if begin.status == "failed":
        return done(cls, "failed", key=key, error=begin.error, flagged=True)
    msg = str(OutcomeUnknownError(f"a run under {key} ended without a result"))
    return done(cls, "outcome_unknown", key=key, error=msg, flagged=True)
