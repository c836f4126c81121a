"""The guarded executor: every consequence class, every store answer, and the invariants."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.tools import tool as lc_tool
from pydantic import BaseModel

from agentflow.consequence import ConsequenceClass
from agentflow.decision import Decision
from agentflow.errors import ConfigurationError, ToolExecutionError
from agentflow.recording import ApprovalRecord, LlmCallRecord, RunContext, ToolCallRecord
from agentflow.tools.contract import ToolContext, ToolRegistry, from_langchain, tool
from agentflow.tools.executor import GuardedExecutor, ToolCall
from agentflow.tools.keys import action_digest
from agentflow.tools.store import AsyncIdempotencyStore, IdempotencyStore, RetryPolicy
from tests.fixtures.valkey import ValkeyHandle

FAST = RetryPolicy(attempts=3, base_s=0.001, cap_s=0.002)


def _approved(ex: GuardedExecutor, call: ToolCall, cls: Any, tid: str) -> Any:
    """Grant ``call`` (as a human's accepted answer would), then execute it."""
    ex.grant(call, thread_id=tid, approver="tester")
    return ex.execute(call, cls, thread_id=tid)


class ListRecorder:
    """A recorder that keeps the tool-call records in a list."""

    def __init__(self) -> None:
        self.tool_calls: list[ToolCallRecord] = []

    def decision(self, ctx: RunContext, decision: Decision[Any]) -> None:
        """Ignored here."""

    def llm_call(self, ctx: RunContext, record: LlmCallRecord) -> None:
        """Ignored here."""

    def tool_call(self, ctx: RunContext, record: ToolCallRecord) -> None:
        """Keep it."""
        self.tool_calls.append(record)

    def approval(self, ctx: RunContext, record: ApprovalRecord) -> None:
        """Ignored here."""


class Script:
    """What a test tool does on each call: 'ok', 'retryable', 'fatal', 'crash' or 'block'."""

    def __init__(self) -> None:
        self.plan: list[str] = []
        self.calls: list[ToolContext | None] = []
        self.gate = threading.Event()

    def run(self, ctx: ToolContext | None, value: int) -> dict[str, Any]:
        self.calls.append(ctx)
        action = self.plan.pop(0) if self.plan else "ok"
        if action == "retryable":
            raise ToolExecutionError("downstream timeout", retryable=True)
        if action == "fatal":
            raise RuntimeError("boom")
        if action == "crash":
            raise _Crash  # stands for the process dying between begin and complete
        if action == "block":
            self.gate.wait(5)
        return {"value": value, "call": len(self.calls)}


class _Crash(BaseException):
    """Not an Exception: escapes the executor like a dying process would."""


class Receipt(BaseModel):
    """A pydantic output (returned in JSON form)."""

    id: str
    amount: float


@pytest.fixture(scope="module")
def store(valkey_server: ValkeyHandle) -> Iterator[IdempotencyStore]:
    """A sync store with a namespace of its own."""
    s = IdempotencyStore.from_url(valkey_server.url, namespace=f"ex{uuid.uuid4().hex[:8]}")
    yield s
    s.close()


@pytest.fixture
def script() -> Script:
    """A fresh tool script."""
    return Script()


def _registry(script: Script) -> ToolRegistry:
    @tool(read_only=True)
    def read(value: int) -> dict[str, Any]:
        """Read."""
        return script.run(None, value)

    @tool
    def write(value: int, ctx: ToolContext) -> dict[str, Any]:
        """Write (undeclared: the class comes from the caller)."""
        return script.run(ctx, value)

    @tool(idempotent=True, forwards_key=True)
    def put(value: int, ctx: ToolContext) -> dict[str, Any]:
        """Idempotent write that forwards its key downstream."""
        return script.run(ctx, value)

    @tool(irreversible=True)
    def pay(value: int, ctx: ToolContext) -> Receipt:
        """Pay (declared irreversible)."""
        script.run(ctx, value)
        return Receipt(id=f"p{value}", amount=value / 2)

    return ToolRegistry([read, write, put, pay])


@pytest.fixture
def ex(script: Script, store: IdempotencyStore) -> GuardedExecutor:
    """An executor over the test tools."""
    return GuardedExecutor(_registry(script), store, retry=FAST, recorder=ListRecorder())


def _tid() -> str:
    return f"thread-{uuid.uuid4().hex}"


def test_safe_call_runs_without_a_key_or_store(script: Script) -> None:
    ex = GuardedExecutor(_registry(script), None)
    r = ex.execute(ToolCall(tool="read", args={"value": 1}), "safe", thread_id=_tid())
    assert r.status == "ok" and r.key is None and r.output == {"value": 1, "call": 1}


def test_safe_call_retries_when_the_tool_says_so(ex: GuardedExecutor, script: Script) -> None:
    script.plan = ["retryable", "retryable"]
    r = ex.execute(ToolCall(tool="read", args={"value": 1}), "safe", thread_id=_tid())
    assert r.status == "ok" and r.attempts == 3 and len(script.calls) == 3


def test_retry_safe_runs_once_then_replays(ex: GuardedExecutor, script: Script) -> None:
    tid = _tid()
    call = ToolCall(tool="write", args={"value": 7}, step=2)
    first = ex.execute(call, "retry_safe", thread_id=tid)
    second = ex.execute(call, "retry_safe", thread_id=tid)
    assert first.status == "ok" and second.status == "replayed"
    assert first.output == second.output and first.key == second.key is not None
    assert len(script.calls) == 1 and script.calls[0] is not None
    assert script.calls[0].idempotency_key == first.key and script.calls[0].step == 2
    # The same tool and arguments at another step is another call.
    assert (
        ex.execute(call.model_copy(update={"step": 3}), "retry_safe", thread_id=tid).status == "ok"
    )
    assert len(script.calls) == 2


def test_retry_safe_retries_reuse_the_key(ex: GuardedExecutor, script: Script) -> None:
    script.plan = ["retryable", "retryable"]
    r = ex.execute(ToolCall(tool="write", args={"value": 1}), "retry_safe", thread_id=_tid())
    assert r.status == "ok" and r.attempts == 3
    keys = {c.idempotency_key for c in script.calls if c}
    assert keys == {r.key} and [c.attempt for c in script.calls if c] == [1, 2, 3]
    outcomes = [rec.outcome for rec in ex.recorder.tool_calls]  # type: ignore[union-attr]
    assert outcomes == ["failed", "failed", "ok"]


def test_retry_safe_gives_up_after_the_policy(ex: GuardedExecutor, script: Script) -> None:
    script.plan = ["retryable"] * 5
    call = ToolCall(tool="write", args={"value": 1})
    tid = _tid()
    r = ex.execute(call, "retry_safe", thread_id=tid)
    assert r.status == "failed" and r.attempts == 3 and r.retryable and not r.flagged
    # The key was released: a later execution may run it again.
    assert ex.execute(call, "retry_safe", thread_id=tid).status == "ok"


def test_retry_unsafe_failure_is_not_retried_and_is_flagged(
    ex: GuardedExecutor, script: Script
) -> None:
    script.plan = ["fatal"]
    call = ToolCall(tool="write", args={"value": 1})
    tid = _tid()
    r = ex.execute(call, "retry_unsafe", thread_id=tid)
    assert r.status == "failed" and r.attempts == 1 and not r.retryable and r.flagged
    assert "RuntimeError: boom" in (r.error or "")
    again = ex.execute(call, "retry_unsafe", thread_id=tid)  # kept as failed: not re-run
    assert again.status == "failed" and again.error == r.error and len(script.calls) == 1


def test_retry_unsafe_runs_once_even_when_the_tool_says_retryable(
    ex: GuardedExecutor, script: Script
) -> None:
    script.plan = ["retryable", "retryable"]
    r = ex.execute(ToolCall(tool="write", args={"value": 1}), "retry_unsafe", thread_id=_tid())
    assert r.status == "failed" and r.attempts == 1 and not r.retryable and len(script.calls) == 1


@pytest.mark.parametrize("cls", ["irreversible", "unknown"])
def test_needs_approval_before_anything_happens(
    ex: GuardedExecutor, script: Script, store: IdempotencyStore, cls: ConsequenceClass
) -> None:
    call, tid = ToolCall(tool="write", args={"value": 3}), _tid()
    r = ex.execute(call, cls, thread_id=tid)
    assert r.status == "needs_approval" and script.calls == [] and r.key is None
    ok = _approved(ex, call, cls, tid)
    assert ok.status == "ok" and ok.key is not None and store.client.exists(ok.key)
    assert _approved(ex, call, cls, tid).status == "replayed"
    assert len(script.calls) == 1


def test_declared_floor_cannot_be_lowered(ex: GuardedExecutor, script: Script) -> None:
    r = ex.execute(ToolCall(tool="pay", args={"value": 4}), "safe", thread_id=_tid())
    assert r.status == "needs_approval" and r.consequence == "irreversible" and script.calls == []
    raised = ex.execute(ToolCall(tool="read", args={"value": 4}), "retry_unsafe", thread_id=_tid())
    assert raised.consequence == "retry_unsafe" and raised.key is not None


def test_outputs_are_json_and_replays_are_equal(ex: GuardedExecutor) -> None:
    call, tid = ToolCall(tool="pay", args={"value": 5}), _tid()
    first = _approved(ex, call, "irreversible", tid)
    replay = _approved(ex, call, "irreversible", tid)
    assert first.output == replay.output == {"id": "p5", "amount": 2.5}


def test_in_flight_call_is_not_run_twice(ex: GuardedExecutor, script: Script) -> None:
    script.plan = ["block"]
    call, tid = ToolCall(tool="write", args={"value": 1}), _tid()
    results: list[Any] = []
    worker = threading.Thread(
        target=lambda: results.append(ex.execute(call, "retry_unsafe", thread_id=tid))
    )
    worker.start()
    while not script.calls:
        time.sleep(0.005)
    busy = ex.execute(call, "retry_unsafe", thread_id=tid)
    script.gate.set()
    worker.join()
    assert busy.status == "in_flight" and busy.retryable and len(script.calls) == 1
    assert results[0].status == "ok"
    assert ex.execute(call, "retry_unsafe", thread_id=tid).output == results[0].output


def _crash_then_expire(
    ex: GuardedExecutor, script: Script, call: ToolCall, cls: ConsequenceClass, tid: str
) -> None:
    script.plan = ["crash"]
    with pytest.raises(_Crash):
        _approved(ex, call, cls, tid)
    time.sleep(ex.lease_s * 2)


def test_expired_lease_reruns_only_a_key_forwarding_retry_safe_tool(
    script: Script, store: IdempotencyStore
) -> None:
    ex = GuardedExecutor(_registry(script), store, lease_s=0.05, retry=FAST)
    call, tid = ToolCall(tool="put", args={"value": 1}), _tid()
    _crash_then_expire(ex, script, call, "retry_safe", tid)
    r = ex.execute(call, "retry_safe", thread_id=tid)
    assert r.status == "ok" and len(script.calls) == 2
    assert script.calls[0].idempotency_key == script.calls[1].idempotency_key  # type: ignore[union-attr]
    assert script.calls[1].attempt == 2  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("write", "retry_safe"),
        ("write", "retry_unsafe"),
        ("put", "retry_unsafe"),
        ("pay", "irreversible"),
    ],
)
def test_expired_lease_otherwise_goes_to_a_human(
    script: Script, store: IdempotencyStore, name: str, cls: ConsequenceClass
) -> None:
    ex = GuardedExecutor(_registry(script), store, lease_s=0.05, retry=FAST)
    call, tid = ToolCall(tool=name, args={"value": 1}), _tid()
    _crash_then_expire(ex, script, call, cls, tid)
    r = _approved(ex, call, cls, tid)
    assert r.status == "outcome_unknown" and r.flagged and len(script.calls) == 1
    assert "check the downstream system" in (r.error or "")
    # A human who checked downstream allows a re-run (an irreversible one needs a new approval):
    assert r.key is not None and store.forget(r.key)
    ex.grant(call, thread_id=tid, approver="tester", approval_id=f"after-the-check-{tid}")
    assert ex.execute(call, cls, thread_id=tid).status == "ok"


def test_explicit_key_with_other_arguments_is_refused(
    ex: GuardedExecutor, script: Script, store: IdempotencyStore
) -> None:
    key = f"{store.namespace}:idem:client-{uuid.uuid4().hex}"
    tid = _tid()
    assert (
        ex.execute(
            ToolCall(tool="write", args={"value": 1}, key=key), "retry_unsafe", thread_id=tid
        ).status
        == "ok"
    )
    r = ex.execute(
        ToolCall(tool="write", args={"value": 2}, key=key), "retry_unsafe", thread_id=tid
    )
    assert r.status == "refused" and "other arguments" in (r.error or "") and len(script.calls) == 1


def test_explicit_key_outside_the_namespace_is_refused(ex: GuardedExecutor, script: Script) -> None:
    call = ToolCall(tool="write", args={"value": 1}, key="someone-else:idem:abc")
    r = ex.execute(call, "retry_unsafe", thread_id=_tid())
    assert r.status == "refused" and "namespace" in (r.error or "") and script.calls == []


def test_lease_defaults_to_the_stores(valkey_server: ValkeyHandle, script: Script) -> None:
    s = IdempotencyStore.from_url(valkey_server.url, lease_s=7.5)
    assert GuardedExecutor(_registry(script), s).lease_s == 7.5
    s.close()


def test_without_a_store_only_safe_calls_run(script: Script) -> None:
    ex = GuardedExecutor(_registry(script), None)
    r = ex.execute(ToolCall(tool="write", args={"value": 1}), "retry_safe", thread_id=_tid())
    assert r.status == "refused" and "nothing with a side effect ran" in (r.error or "")
    assert script.calls == []


def test_unknown_tool_and_bad_arguments_are_refused(ex: GuardedExecutor, script: Script) -> None:
    assert ex.execute(ToolCall(tool="nope"), "safe", thread_id=_tid()).status == "refused"
    r = ex.execute(ToolCall(tool="write", args={"value": "x"}), "retry_safe", thread_id=_tid())
    assert r.status == "refused" and "invalid arguments" in (r.error or "") and script.calls == []


def test_every_attempt_is_recorded(ex: GuardedExecutor, script: Script) -> None:
    tid = _tid()
    call = ToolCall(tool="write", args={"value": 9})
    ex.execute(call, "irreversible", thread_id=tid)
    _approved(ex, call, "irreversible", tid)
    _approved(ex, call, "irreversible", tid)
    recs = ex.recorder.tool_calls  # type: ignore[union-attr]
    assert [r.outcome for r in recs] == ["needs_approval", "ok", "replayed"]
    assert recs[1].idempotency_key == recs[2].idempotency_key is not None
    assert all(r.consequence == "irreversible" and r.args == {"value": 9} for r in recs)


def test_namespace_must_match_the_store(store: IdempotencyStore, script: Script) -> None:
    with pytest.raises(ConfigurationError):
        GuardedExecutor(_registry(script), store, namespace="other")


def test_sync_execute_refuses_async_tools(store: IdempotencyStore) -> None:
    @tool(read_only=True)
    async def aread(value: int) -> int:
        """Async read."""
        return value

    ex = GuardedExecutor(ToolRegistry([aread]), store)
    assert (
        ex.execute(ToolCall(tool="aread", args={"value": 1}), "safe", thread_id="t").status
        == "refused"
    )


async def test_aexecute_on_the_async_store(valkey_server: ValkeyHandle, script: Script) -> None:
    astore = AsyncIdempotencyStore.from_url(
        valkey_server.url, namespace=f"ax{uuid.uuid4().hex[:8]}"
    )
    calls: list[str | None] = []

    @tool(idempotent=True)
    async def acharge(amount: int, ctx: ToolContext) -> str:
        """Async charge."""
        calls.append(ctx.idempotency_key)
        return f"charged {amount}"

    @lc_tool
    def lc_note(text: str) -> str:
        """Note something."""
        calls.append(text)
        return text.upper()

    reg = _registry(script)
    reg.add(acharge)
    reg.add(from_langchain(lc_note, idempotent=True))
    ex = GuardedExecutor(reg, astore, retry=FAST)
    tid = _tid()
    for _ in range(2):
        a = await ex.aexecute(
            ToolCall(tool="acharge", args={"amount": 3}), "retry_safe", thread_id=tid
        )
        b = await ex.aexecute(
            ToolCall(tool="lc_note", args={"text": "hi"}), "retry_unsafe", thread_id=tid
        )
        c = await ex.aexecute(
            ToolCall(tool="write", args={"value": 2}), "retry_unsafe", thread_id=tid
        )
    assert (a.status, b.status, c.status) == ("replayed", "replayed", "replayed")
    assert (a.output, b.output) == ("charged 3", "HI")
    assert len(calls) == 2 and len(script.calls) == 1
    await astore.close()


async def test_aexecute_works_on_a_sync_store(store: IdempotencyStore, script: Script) -> None:
    ex = GuardedExecutor(_registry(script), store, retry=FAST)
    call, tid = ToolCall(tool="write", args={"value": 1}), _tid()
    assert (await ex.aexecute(call, "retry_unsafe", thread_id=tid)).status == "ok"
    assert ex.execute(call, "retry_unsafe", thread_id=tid).status == "replayed"
    assert len(script.calls) == 1


def test_sync_execute_refuses_an_async_store(valkey_server: ValkeyHandle, script: Script) -> None:
    astore = AsyncIdempotencyStore.from_url(valkey_server.url)
    with pytest.raises(ConfigurationError):
        GuardedExecutor(_registry(script), astore).execute(
            ToolCall(tool="read", args={"value": 1}), "safe", thread_id="t"
        )


# --- invariants ---------------------------------------------------------------------

_CLASSES: list[ConsequenceClass] = ["safe", "retry_safe", "retry_unsafe", "irreversible", "unknown"]
_steps = st.lists(
    st.tuples(
        st.sampled_from(_CLASSES),
        st.booleans(),
        st.integers(0, 1),
        st.sampled_from(["ok", "retryable", "fatal"]),
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=_steps)
def test_invariants_hold_for_any_sequence(
    store: IdempotencyStore, steps: list[tuple[ConsequenceClass, bool, int, str]]
) -> None:
    """No grant, no run; a grant runs one call; a completed key never runs again; at most
    one success per key."""
    script = Script()
    ex = GuardedExecutor(_registry(script), store, retry=FAST)
    tid = _tid()
    completed: set[str] = set()
    granted: set[int] = set()
    approved_keys: set[str] = set()
    successes: dict[str, int] = {}
    for cls, approved, step, behaviour in steps:
        script.plan = [behaviour]
        before = len(script.calls)
        call = ToolCall(tool="write", args={"value": 1}, step=step)
        if approved:
            ex.grant(call, thread_id=tid, approver="tester")
            granted.add(step)  # one approval per step's request: granting twice is one grant
        r = ex.execute(call, cls, thread_id=tid)
        ran = len(script.calls) > before
        if cls in ("irreversible", "unknown"):
            if not granted:  # a key completed by another class replays; nothing runs
                assert not ran and r.status != "ok"
            if ran and r.key is not None:
                approved_keys.add(r.key)
            # Each grant lets one call run (its retries under the same key included).
            assert len(approved_keys) <= len(granted)
        if r.key in completed:
            assert not ran and r.status == "replayed"
        if r.status == "ok" and r.key is not None:
            completed.add(r.key)
            successes[r.key] = successes.get(r.key, 0) + 1
    assert all(n == 1 for n in successes.values())


# --- approval grants ------------------------------------------------------------------


def test_a_grant_runs_exactly_its_call_once(ex: GuardedExecutor, script: Script) -> None:
    tid = _tid()
    call = ToolCall(tool="pay", args={"value": 7}, step=0)
    ex.grant(call, thread_id=tid, approver="sam")
    other_args = ex.execute(ToolCall(tool="pay", args={"value": 70}), "irreversible", thread_id=tid)
    other_thread = ex.execute(call, "irreversible", thread_id=_tid())
    assert other_args.status == other_thread.status == "needs_approval" and script.calls == []
    assert "no approval grant" in (other_args.error or "")
    assert ex.execute(call, "irreversible", thread_id=tid).status == "ok"
    # The same call at another step is another effect: the used grant does not cover it.
    again = ex.execute(call.model_copy(update={"step": 1}), "irreversible", thread_id=tid)
    assert again.status == "needs_approval" and "already used" in (again.error or "")
    assert len(script.calls) == 1


def test_an_expired_grant_fails_closed(ex: GuardedExecutor, script: Script) -> None:
    tid = _tid()
    call = ToolCall(tool="pay", args={"value": 8})
    ex.grant(call, thread_id=tid, approver="sam", ttl_s=0.05)
    time.sleep(0.1)
    r = ex.execute(call, "unknown", thread_id=tid)
    assert r.status == "needs_approval" and "expired" in (r.error or "") and script.calls == []


def test_a_grant_does_not_lower_a_declared_floor_or_run_without_a_store(script: Script) -> None:
    ex = GuardedExecutor(_registry(script), None, retry=FAST)
    r = ex.execute(ToolCall(tool="pay", args={"value": 9}), "safe", thread_id=_tid())
    assert r.status == "refused" and r.consequence == "irreversible" and script.calls == []
    with pytest.raises(ConfigurationError):
        ex.grant(ToolCall(tool="pay", args={"value": 9}), thread_id="t", approver="sam")


def test_a_used_grant_never_begins_a_call_again(ex: GuardedExecutor, script: Script) -> None:
    """Released after a retryable failure, the key may begin again, but not on the old grant."""
    tid = _tid()
    call = ToolCall(tool="pay", args={"value": 11})
    script.plan = ["retryable"]
    first = _approved(ex, call, "irreversible", tid)
    assert first.status == "failed" and len(script.calls) == 1
    again = _approved(ex, call, "irreversible", tid)  # the same approval, answered again
    assert again.status == "needs_approval" and "already used" in (again.error or "")
    ex.grant(call, thread_id=tid, approver="sam", approval_id="second-approval")
    assert ex.execute(call, "irreversible", thread_id=tid).status == "ok"
    assert len(script.calls) == 2


@pytest.fixture
def strict(script: Script, store: IdempotencyStore) -> GuardedExecutor:
    return GuardedExecutor(_registry(script), store, retry=FAST, assessed_only=True)


def test_assessed_only_trusts_the_kept_class_not_the_callers(
    strict: GuardedExecutor, store: IdempotencyStore, script: Script
) -> None:
    tid = _tid()
    call = ToolCall(tool="write", args={"value": 12})  # no declared annotations
    digest = action_digest("write", {"value": 12})
    # Nothing kept for this action: whatever the caller says, it counts as unknown.
    assert strict.execute(call, "safe", thread_id=tid).status == "needs_approval"
    assert store.assess(tid, digest, "irreversible") == "irreversible"
    assert store.assess(tid, digest, "safe") == "irreversible"  # raise only
    lowered = strict.execute(call, "retry_safe", thread_id=tid)
    assert lowered.status == "needs_approval" and lowered.consequence == "irreversible"
    assert script.calls == []
    other = ToolCall(tool="write", args={"value": 13})
    store.assess(tid, action_digest("write", {"value": 13}), "retry_safe")
    ran = strict.execute(other, "safe", thread_id=tid)  # raised to the kept class
    assert ran.status == "ok" and ran.consequence == "retry_safe" and ran.key is not None
    read = strict.execute(ToolCall(tool="read", args={"value": 1}), "safe", thread_id=tid)
    assert read.status == "ok" and read.consequence == "safe"  # declared read-only
