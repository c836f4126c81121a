"""The effects journal: outcomes of non-safe calls outlive the store's records.

Real Valkey with a one-second retention, a real SQLite ledger as the journal. A record
that expired from the store must still replay (completed), stay failed, or stay unknown;
a process killed between the journal write and the store's completion must not run the
effect again; a journal that cannot be read runs nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentflow.checkpoints.ledger import Ledger
from agentflow.errors import ToolExecutionError
from agentflow.tools.contract import ToolContext, ToolRegistry, tool
from agentflow.tools.executor import GuardedExecutor, ToolCall
from agentflow.tools.keys import action_digest, derive_key
from agentflow.tools.store import IdempotencyStore
from tests.fixtures.valkey import ValkeyHandle

RETENTION_S = 1


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger(f"sqlite:///{tmp_path}/journal.db")
    led.setup()
    yield led
    led.close()


@pytest.fixture
def store(valkey_server: ValkeyHandle) -> Iterator[IdempotencyStore]:
    s = IdempotencyStore.from_url(
        valkey_server.url,
        namespace=f"jr{uuid.uuid4().hex[:8]}",
        retention_s=RETENTION_S,
        lease_s=0.5,
    )
    yield s
    s.close()


def _tools(paid: list[int]) -> ToolRegistry:
    @tool(irreversible=True)
    def pay(amount: int, ctx: ToolContext) -> dict[str, Any]:
        """Pay (declared irreversible)."""
        paid.append(amount)
        return {"paid": amount, "n": len(paid)}

    @tool(idempotent=False)
    def ship(amount: int, ctx: ToolContext) -> dict[str, Any]:
        """Ship a parcel; fails for a negative amount (not retryable)."""
        if amount < 0:
            raise ToolExecutionError("the carrier refused the parcel", retryable=False)
        paid.append(amount)
        return {"shipped": amount}

    return ToolRegistry([pay, ship])


def _expire() -> None:
    time.sleep(RETENTION_S + 0.6)


def test_a_completed_call_replays_after_its_store_record_expired(
    store: IdempotencyStore, ledger: Ledger
) -> None:
    paid: list[int] = []
    ex = GuardedExecutor(_tools(paid), store, journal=ledger)
    call = ToolCall(tool="pay", args={"amount": 25}, turn="m1")
    ex.grant(call, thread_id="t", approver="sam", approval_id="a1")
    assert ex.execute(call, "irreversible", thread_id="t").status == "ok"
    _expire()
    ex.grant(call, thread_id="t", approver="sam", approval_id="a2")  # even a fresh approval
    again = ex.execute(call, "irreversible", thread_id="t")
    assert again.status == "replayed" and again.output == {"paid": 25, "n": 1}
    assert paid == [25]


def test_without_the_journal_the_same_call_would_run_again(store: IdempotencyStore) -> None:
    """What the journal is for: the store alone forgets (the issue's double refund)."""
    paid: list[int] = []
    ex = GuardedExecutor(_tools(paid), store)
    call = ToolCall(tool="pay", args={"amount": 25}, turn="m1")
    ex.grant(call, thread_id="t", approver="sam", approval_id="b1")
    assert ex.execute(call, "irreversible", thread_id="t").status == "ok"
    _expire()
    ex.grant(call, thread_id="t", approver="sam", approval_id="b2")
    assert ex.execute(call, "irreversible", thread_id="t").status == "ok"
    assert paid == [25, 25]


def test_a_failed_call_stays_failed_after_expiry(store: IdempotencyStore, ledger: Ledger) -> None:
    paid: list[int] = []
    ex = GuardedExecutor(_tools(paid), store, journal=ledger)
    call = ToolCall(tool="ship", args={"amount": -1})
    assert ex.execute(call, "retry_unsafe", thread_id="t").status == "failed"
    _expire()
    again = ex.execute(call, "retry_unsafe", thread_id="t")
    assert again.status == "failed" and "carrier refused" in (again.error or "")


def test_a_kill_between_journal_and_store_never_runs_twice(
    store: IdempotencyStore, ledger: Ledger
) -> None:
    """The holder wrote "completed" to the journal and died before telling the store:
    its lease ends, and the next attempt replays the journal's result."""
    paid: list[int] = []
    ex = GuardedExecutor(_tools(paid), store, journal=ledger)
    args = {"amount": 7}
    key = derive_key(store.namespace, "t", 0, "ship", args)
    fp = action_digest("ship", args)
    begun = store.begin(key, fp, 0.3)
    assert begun.token
    ledger.effect(key, thread_id="t", tool="ship", fingerprint=fp, outcome="completed",
                  result={"shipped": 7})  # fmt: skip
    time.sleep(0.5)  # the dead holder's lease ends
    again = ex.execute(ToolCall(tool="ship", args=args), "retry_unsafe", thread_id="t")
    assert again.status == "replayed" and again.output == {"shipped": 7} and paid == []


def test_an_unknown_outcome_stays_unknown_after_expiry(
    store: IdempotencyStore, ledger: Ledger
) -> None:
    paid: list[int] = []
    ex = GuardedExecutor(_tools(paid), store, journal=ledger)
    args = {"amount": 9}
    key = derive_key(store.namespace, "t", 0, "ship", args)
    assert store.begin(key, action_digest("ship", args), 0.2).token  # a holder that died
    time.sleep(0.4)
    call = ToolCall(tool="ship", args=args)
    assert ex.execute(call, "retry_unsafe", thread_id="t").status == "outcome_unknown"
    _expire()
    assert ex.execute(call, "retry_unsafe", thread_id="t").status == "outcome_unknown"
    assert paid == []


def test_an_unreadable_journal_runs_nothing(store: IdempotencyStore, tmp_path: Path) -> None:
    paid: list[int] = []
    broken = Ledger(f"sqlite:///{tmp_path}/never-set-up.db")  # no tables: every read fails
    ex = GuardedExecutor(_tools(paid), store, journal=broken)
    res = ex.execute(ToolCall(tool="ship", args={"amount": 1}), "retry_unsafe", thread_id="t")
    assert res.status == "refused" and res.retryable and "journal" in (res.error or "")
    assert paid == []
    broken.close()


def test_a_kill_inside_the_tool_after_its_effect_never_runs_it_again_after_expiry(
    store: IdempotencyStore, ledger: Ledger
) -> None:
    """The issue's double refund: the holder is killed right after the payment (journal:
    started), the store forgets the key; the resume finds an unknown outcome, not a new call."""
    paid: list[int] = []
    ex = GuardedExecutor(_tools(paid), store, journal=ledger)
    args = {"amount": 25}
    key = derive_key(store.namespace, "t", 0, "pay", args, turn="m1")
    fp = action_digest("pay", args)
    ledger.effect(key, thread_id="t", tool="pay", fingerprint=fp, outcome="started")
    paid.append(25)  # the effect the killed holder made
    _expire()
    call = ToolCall(tool="pay", args=args, turn="m1")
    ex.grant(call, thread_id="t", approver="sam", approval_id="c1")
    res = ex.execute(call, "irreversible", thread_id="t")
    assert res.status == "outcome_unknown" and res.flagged, res
    assert paid == [25]
    assert ledger.effect_of(key).outcome == "outcome_unknown"  # type: ignore[union-attr]


def test_a_live_started_call_is_in_flight_and_a_released_one_runs(
    store: IdempotencyStore, ledger: Ledger
) -> None:
    paid: list[int] = []
    ex = GuardedExecutor(_tools(paid), store, journal=ledger)
    args = {"amount": 3}
    key = derive_key(store.namespace, "t", 0, "ship", args)
    fp = action_digest("ship", args)
    assert store.begin(key, fp, 30).token  # a live holder
    ledger.effect(key, thread_id="t", tool="ship", fingerprint=fp, outcome="started")
    call = ToolCall(tool="ship", args=args)
    assert ex.execute(call, "retry_unsafe", thread_id="t").status == "in_flight"
    store.forget(key)
    ledger.effect(key, thread_id="t", tool="ship", fingerprint=fp, outcome="released")
    assert ex.execute(call, "retry_unsafe", thread_id="t").status == "ok" and paid == [3]


def test_a_human_settles_an_unknown_outcome_in_the_store_and_the_journal(
    store: IdempotencyStore, ledger: Ledger
) -> None:
    paid: list[int] = []
    ex = GuardedExecutor(_tools(paid), store, journal=ledger)
    args = {"amount": 4}
    key = derive_key(store.namespace, "t", 0, "ship", args)
    assert store.begin(key, action_digest("ship", args), 0.2).token  # a holder that died
    time.sleep(0.4)
    call = ToolCall(tool="ship", args=args)
    assert ex.execute(call, "retry_unsafe", thread_id="t").status == "outcome_unknown"
    ex.settle(key, {"shipped": 4, "checked_by": "ops"})
    res = ex.execute(call, "retry_unsafe", thread_id="t")
    assert res.status == "replayed" and res.output == {"shipped": 4, "checked_by": "ops"}
    _expire()
    assert ex.execute(call, "retry_unsafe", thread_id="t").status == "replayed"
    ex.forget(key)
    assert ex.execute(call, "retry_unsafe", thread_id="t").status == "ok" and paid == [4]
