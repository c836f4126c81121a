"""The guarded executor: runs each tool call by its consequence class, at most once.

==============  =====================================================================
class           protocol
==============  =====================================================================
safe            run now, no store; retries allowed
retry_safe      run under the derived key; retries reuse the key
retry_unsafe    run once under the key; a failure is not retried and is flagged
irreversible    only with an approval grant for exactly this call, then once under the key
unknown         like irreversible: a human's grant first
==============  =====================================================================

An approval grant is a record in the idempotency store, written when an authenticated
approver's answer is accepted (:meth:`IdempotencyStore.answer`), for one thread and one
action digest (tool and canonical arguments). Beginning an irreversible or unknown call
consumes it in the same atomic step that takes the lease, so nothing a caller passes,
and nothing in graph state, can stand in for it: other arguments, another thread, an
expired or already used grant all answer ``needs_approval`` and the tool does not run.

With ``assessed_only=True`` (how :func:`agentflow.agent` builds it) the class passed in is
not trusted either: a call runs under the higher of it and the class the consequence node
kept in the store for that exact action (:meth:`IdempotencyStore.assess`), and an action
with no kept class runs as ``unknown`` (needs a grant) unless its tool is declared
read-only. Graph state that lowers a class, or swaps in other arguments, gains nothing.

The class a call runs under is never below the tool's declared floor (see
:func:`agentflow.consequence.apply_floor`). What the store answers decides the rest:
``completed`` replays the stored output without calling the tool, ``in_flight`` and
``mismatch`` stop the call, and an ``expired`` lease (outcome unknown) is re-run only by
a ``retry_safe`` tool that forwards its key downstream; anything else goes to a human as
``outcome_unknown``. With the store unreachable only ``safe`` calls run; the others are
``refused`` with the store's error and nothing runs, so the thread can resume later.

A failed write keeps its key as failed (it is not re-run by a later call) unless the
tool is ``retry_safe`` or raised ``ToolExecutionError(retryable=True)`` — the tool's own
statement that nothing happened and a retry is safe. Outputs are returned in their JSON
form, so a first run and its replay return equal values.

The protocol is written once, as a generator of store and tool operations
(:mod:`agentflow.tools._protocol`); ``execute`` and ``aexecute`` only drive it, synchronously or
on an event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator
from typing import Any

from pydantic_core import to_jsonable_python

from agentflow.consequence import ConsequenceClass, apply_floor, floor_from_annotations
from agentflow.errors import (
    ApprovalError,
    ConfigurationError,
    LedgerError,
    StoreUnavailableError,
    ToolError,
)
from agentflow.recording import Recorder, RunContext
from agentflow.tools._protocol import (
    Begin,
    Complete,
    Durable,
    Fail,
    Finisher,
    Journal,
    Lease,
    Lookup,
    Op,
    Peek,
    Ran,
    Recall,
    Run,
    Sleep,
    aperform,
    describe,
    from_journal,
    is_retryable,
    journal,
    perform,
    settled,
)
from agentflow.tools.calls import ExecutionResult, ToolCall
from agentflow.tools.contract import ToolContext, ToolRegistry, ToolSpec
from agentflow.tools.durability import DURABILITY_FIX
from agentflow.tools.journal import EffectEntry, EffectJournal, EffectOutcome
from agentflow.tools.keys import action_digest, derive_key, grant_key, key_prefix
from agentflow.tools.store import (
    AsyncIdempotencyStore,
    BeginResult,
    IdempotencyStore,
    Peeked,
    RetryPolicy,
)

__all__ = ["ExecutionResult", "GuardedExecutor", "ToolCall"]


_Protocol = Generator[Op, Any, ExecutionResult]


class GuardedExecutor:
    """Runs tool calls under the consequence-class protocol (see the module docstring)."""

    def __init__(
        self,
        tools: ToolRegistry,
        store: IdempotencyStore | AsyncIdempotencyStore | None,
        *,
        namespace: str | None = None,
        lease_s: float | None = None,
        retry: RetryPolicy | None = None,
        recorder: Recorder | None = None,
        assessed_only: bool = False,
        journal: EffectJournal | None = None,
    ) -> None:
        self.tools = tools
        """The tools calls may name."""
        self.store = store
        """Idempotency store; None means only ``safe`` calls can run."""
        self.namespace = namespace or (store.namespace if store is not None else "agentflow")
        """Key namespace; defaults to the store's, which must agree with it."""
        self.lease_s = lease_s or (store.lease_s if store is not None else 30.0)
        """Lease taken per call (default: the store's); must exceed the slowest tool's run."""
        self.retry = retry or RetryPolicy(attempts=3, base_s=0.05, cap_s=1.0)
        """Automatic retries of ``safe`` and ``retry_safe`` calls whose tool says retryable."""
        self.recorder = recorder
        """Receives one record per attempt and per call that did not run."""
        self.assessed_only = assessed_only
        """Trust only classes the consequence node kept in the store (see the module doc)."""
        self.journal = journal
        """Durable outcomes of non-safe calls (:mod:`agentflow.tools.journal`); None: the store only."""
        if store is not None and store.namespace != self.namespace:
            raise ConfigurationError(
                f"executor namespace {self.namespace!r} differs from the store's "
                f"{store.namespace!r}",
                hint="leave namespace unset to use the store's",
            )

    def grant(
        self,
        call: ToolCall,
        *,
        thread_id: str,
        approver: str,
        approval_id: str | None = None,
        ttl_s: float = 24 * 3600,
    ) -> str:
        """Grant one run of ``call`` on ``thread_id``, as ``approver``; returns its digest.

        Granting again under the same ``approval_id`` changes nothing (a used grant stays
        used): a second effect needs a second approval, under another id.

        For code that authenticated ``approver`` itself (a custom graph, a script); the
        graphs' approval gate does this through :func:`agentflow.nodes.approval.accept_answer`. Raises
        :class:`ToolError` for an unknown tool or invalid arguments.
        """
        if not isinstance(self.store, IdempotencyStore):
            raise ConfigurationError(
                "granting needs a synchronous idempotency store", hint="pass an IdempotencyStore"
            )
        digest = self.tools.get(call.tool).digest(call.args)
        approval_id = approval_id or f"grant_{digest[:16]}_{thread_id}_{call.step}"
        result = self.store.answer(
            approval_id=approval_id,
            thread_id=thread_id,
            answer_fp=digest,
            decision="approve",
            approver=approver,
            grant_digest=digest,
            grant_ttl_s=ttl_s,
        )
        if result.status == "answered":
            raise ApprovalError(
                f"approval {approval_id!r} was already answered ({result.decision} by "
                f"{result.approver})",
                hint="grant under a new approval id",
            )
        return digest

    # --- drivers ----------------------------------------------------------------

    def settle(self, key: str, result: Any) -> None:
        """A human resolves an unknown or failed outcome as done with ``result``: the store
        and the effects journal both replay it from now on."""
        store = self._sync_store("settling a key")
        store.settle(key, result)
        if self.journal is not None:
            entry = self.journal.effect_of(key)
            self.journal.effect(
                key,
                thread_id=entry.thread_id if entry else "",
                tool=entry.tool if entry else "",
                fingerprint=entry.fingerprint if entry else "",
                outcome="completed",
                result=to_jsonable_python(result, fallback=repr),
            )

    def forget(self, key: str) -> None:
        """A human allows ``key`` to run again: its store record and journal row go."""
        self._sync_store("forgetting a key").forget(key)
        if self.journal is not None:
            self.journal.forget_effect(key)

    def _sync_store(self, what: str) -> IdempotencyStore:
        if not isinstance(self.store, IdempotencyStore):
            raise ConfigurationError(f"{what} needs a synchronous IdempotencyStore")
        return self.store

    def execute(
        self,
        call: ToolCall,
        consequence: ConsequenceClass,
        *,
        thread_id: str,
        run: RunContext | None = None,
        recorder: Recorder | None = None,
    ) -> ExecutionResult:
        """Run ``call`` under ``consequence``; never raises for tool or store failures.

        ``recorder`` overrides the executor's own for this call (a run's traced recorder).
        """
        if isinstance(self.store, AsyncIdempotencyStore):
            raise ConfigurationError(
                "execute() needs a synchronous IdempotencyStore", hint="use aexecute()"
            )
        gen = self._protocol(call, consequence, thread_id, run, recorder, sync=True)
        value: Any = None
        error: StoreUnavailableError | LedgerError | None = None
        while True:
            try:
                op = gen.throw(error) if error is not None else gen.send(value)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            value, error = None, None
            try:
                if isinstance(op, Lookup | Journal):
                    value = journal(self.journal, op) if self.journal is not None else None
                else:
                    value = perform(self.store, op)
            except (StoreUnavailableError, LedgerError) as exc:
                error = exc

    async def aexecute(
        self,
        call: ToolCall,
        consequence: ConsequenceClass,
        *,
        thread_id: str,
        run: RunContext | None = None,
        recorder: Recorder | None = None,
    ) -> ExecutionResult:
        """Same as :meth:`execute`, on the event loop (async store and async tools native)."""
        gen = self._protocol(call, consequence, thread_id, run, recorder, sync=False)
        value: Any = None
        error: StoreUnavailableError | LedgerError | None = None
        while True:
            try:
                op = gen.throw(error) if error is not None else gen.send(value)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            value, error = None, None
            try:
                if isinstance(op, Lookup | Journal):
                    sink = self.journal
                    value = await asyncio.to_thread(journal, sink, op) if sink is not None else None
                else:
                    value = await aperform(self.store, op)
            except (StoreUnavailableError, LedgerError) as exc:
                error = exc

    # --- the protocol -------------------------------------------------------------

    def _protocol(
        self,
        call: ToolCall,
        consequence: ConsequenceClass,
        thread_id: str,
        run: RunContext | None,
        recorder: Recorder | None,
        *,
        sync: bool,
    ) -> _Protocol:
        rc = run or RunContext(thread_id=thread_id, run_id="")
        done = Finisher(recorder or self.recorder, rc, call)
        try:
            spec = self.tools.get(call.tool)
            declared = floor_from_annotations(spec.annotations)
            cls = apply_floor(declared, consequence)
            kwargs, json_args = spec.parse_args(call.args)
        except ToolError as exc:
            return done(consequence, "refused", error=str(exc))
        fp = action_digest(spec.name, json_args)
        if self.assessed_only and declared != "safe" and cls not in ("irreversible", "unknown"):
            kept: ConsequenceClass | None = None
            if self.store is not None:
                # Store down: nothing kept can be read, so the call counts as unknown and
                # is refused below with the store's error (fail closed).
                with contextlib.suppress(StoreUnavailableError):
                    kept = yield Recall(thread_id, fp)
            cls = apply_floor(kept or "unknown", cls)
        if sync and spec.is_async:
            return done(cls, "refused", error=f"tool {spec.name!r} is async; use aexecute()")
        if cls == "safe":
            ran, n = yield from self._attempts(
                spec, kwargs, None, thread_id, call.step, 1, True, done, cls
            )
            if ran.error is not None:
                return done(cls, "failed", ran=ran, attempts=n, retryable=is_retryable(ran.error))
            return done(cls, "ok", ran=ran, attempts=n)

        key = call.key or derive_key(
            self.namespace, thread_id, call.step, spec.name, json_args, turn=call.turn
        )
        if not key.startswith(key_prefix(self.namespace)):
            msg = f"explicit key {key!r} is outside the namespace {self.namespace!r}"
            return done(cls, "refused", key=key, error=msg)
        if self.store is None:
            msg = str(StoreUnavailableError("no idempotency store is configured"))
            return done(cls, "refused", key=key, error=msg, retryable=True)
        if self.journal is not None:
            # Before any lease or grant is taken: a key the journal knows never runs again,
            # however long ago its store record expired.
            try:
                entry: EffectEntry | None = yield Lookup(key)
            except LedgerError as exc:
                msg = f"the effects journal is unavailable, so nothing runs: {exc.message}"
                return done(cls, "refused", key=key, error=msg, retryable=True)
            reclaimable = cls == "retry_safe" and spec.forwards_key
            if entry is not None and entry.outcome == "started" and not reclaimable:
                return (yield from self._started(done, cls, key, fp, thread_id, spec.name))
            if entry is not None and entry.outcome not in ("started", "released"):
                return from_journal(done, cls, key, fp, entry)
        try:
            problem: str | None = yield Durable()
        except StoreUnavailableError as exc:
            return done(cls, "refused", key=key, error=str(exc), retryable=True)
        if problem is not None:
            msg = f"the idempotency store {self.store.where} can lose writes: {problem}"
            return done(cls, "refused", key=key, error=f"{msg} (fix: {DURABILITY_FIX})")
        reclaim = cls == "retry_safe" and spec.forwards_key
        needs_grant = cls in ("irreversible", "unknown")
        grant = grant_key(self.namespace, thread_id, fp) if needs_grant else None
        try:
            begin: BeginResult = yield Begin(key, fp, self.lease_s, reclaim, grant)
        except StoreUnavailableError as exc:
            return done(cls, "refused", key=key, error=str(exc), retryable=True)
        if begin.status == "no_grant":
            msg = f"{cls} call needs a human's approval: {begin.error}"
            # Only an expired approval is worth asking again: a missing or another call's
            # grant means no human approved this call, a used one means it already ran.
            expired = begin.grant_refusal == "expired"
            return done(cls, "needs_approval", error=msg, retryable=expired)
        if not begin.holds_lease:
            result = settled(done, cls, begin)
            if result.status == "outcome_unknown" and self.journal is not None:
                with contextlib.suppress(LedgerError):  # the store still says expired
                    yield Journal(
                        key, thread_id, spec.name, fp, "outcome_unknown", None, result.error
                    )
            return result

        assert begin.token is not None
        if self.journal is not None:
            try:
                yield Journal(key, thread_id, spec.name, fp, "started")
            except LedgerError as exc:
                # No trace of the start, no start: give the key back (a consumed grant
                # stays used; a human approves again once the ledger is back).
                with contextlib.suppress(StoreUnavailableError):
                    yield Fail(key, begin.token, "effects journal unavailable", True)
                msg = f"the effects journal is unavailable, so nothing runs: {exc.message}"
                return done(cls, "refused", key=key, error=msg, retryable=True)
        retries = cls == "retry_safe"
        lease = Lease(key, begin.token, self.lease_s)
        ran, n = yield from self._attempts(
            spec, kwargs, key, thread_id, call.step, begin.attempt, retries, done, cls, lease
        )
        if ran.error is None:
            output = to_jsonable_python(ran.output, fallback=repr)
            journaled: str | None = None
            if self.journal is not None:
                # First the durable fact, then the store: killed in between, the store's
                # lease ends and the journal still answers "completed".
                try:
                    yield Journal(key, thread_id, spec.name, fp, "completed", output)
                except LedgerError as exc:
                    journaled = f"the result is not in the effects journal ({exc.message})"
            try:
                stored = yield Complete(key, begin.token, output)
                warning = None if stored else "lease lost before the result was stored"
            except StoreUnavailableError as exc:
                warning = (
                    f"the tool ran but its result was not stored ({exc.message}); once the "
                    "lease ends the outcome counts as unknown and a human decides"
                )
            warning = "; ".join(w for w in (warning, journaled) if w) or None
            return done(
                cls,
                "ok",
                ran=Ran(output, None, ran.latency_ms),
                key=key,
                attempts=n,
                error=warning,
                flagged=warning is not None,
            )
        error_retryable = is_retryable(ran.error)
        release = cls == "retry_safe" or error_retryable
        if self.journal is not None:
            outcome: EffectOutcome = "released" if release else "failed"
            with contextlib.suppress(LedgerError):  # the store keeps it failed (or free) too
                yield Journal(key, thread_id, spec.name, fp, outcome, None, describe(ran.error))
        # Store gone: the lease runs out and the outcome counts as unknown (fails closed).
        with contextlib.suppress(StoreUnavailableError):
            yield Fail(key, begin.token, describe(ran.error), release)
        return done(
            cls,
            "failed",
            ran=ran,
            key=key,
            attempts=n,
            retryable=retries and error_retryable,
            flagged=not retries,
        )

    def _started(
        self, done: Finisher, cls: ConsequenceClass, key: str, fp: str, thread_id: str, tool: str
    ) -> Generator[Op, Any, ExecutionResult]:
        """A key the journal says was started: the store says whether it still runs.

        A live lease is in flight; a stored result replays; anything else (the lease
        ended, or the record expired) is an unknown outcome: a human decides, nothing runs.
        """
        try:
            peeked: Peeked = yield Peek(key)
        except StoreUnavailableError as exc:
            return done(cls, "refused", key=key, error=str(exc), retryable=True)
        if peeked.state == "in_flight" and peeked.lease_left_s > 0:
            msg = f"another execution holds {key} for {peeked.lease_left_s:.3f} s"
            return done(cls, "in_flight", key=key, error=msg, retryable=True)
        if peeked.state == "completed":
            return done(cls, "replayed", key=key, output=peeked.result)
        if peeked.state == "failed":
            return done(cls, "failed", key=key, error="kept failed by the store", flagged=True)
        msg = f"a run under {key} started and ended without a result (effects journal)"
        with contextlib.suppress(LedgerError):
            yield Journal(key, thread_id, tool, fp, "outcome_unknown", None, msg)
        return done(cls, "outcome_unknown", key=key, error=msg, flagged=True)

    def _attempts(
        self,
        spec: ToolSpec,
        kwargs: dict[str, Any],
        key: str | None,
        thread_id: str,
        step: int,
        first: int,
        retries: bool,
        done: Finisher,
        cls: ConsequenceClass,
        lease: Lease | None = None,
    ) -> Generator[Op, Any, tuple[Ran, int]]:
        """Call the tool, retrying (same key) while allowed and the tool says retryable;
        ``lease`` is renewed while each attempt runs."""
        delays = self.retry.delays() if retries else iter(())
        n = 0
        while True:
            ctx = ToolContext(
                idempotency_key=key, thread_id=thread_id, attempt=first + n, step=step
            )
            n += 1
            ran: Ran = yield Run(spec, kwargs, ctx, lease)
            if ran.error is None or not is_retryable(ran.error):
                return ran, n
            delay = next(delays, None)
            if delay is None:
                return ran, n
            done.record(
                cls, "failed", key=key, error=describe(ran.error), latency_ms=ran.latency_ms
            )
            yield Sleep(delay)
