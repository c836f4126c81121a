"""Leases follow the call: a tool slower than its lease is renewed while it runs, so
nobody sees its outcome as unknown (or runs a retry-safe call again beside it); a holder
that dies stops renewing, and its lease ends as before. Real Valkey."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from agentflow.tools.contract import ToolContext, ToolRegistry, tool
from agentflow.tools.executor import GuardedExecutor, ToolCall
from agentflow.tools.store import AsyncIdempotencyStore, IdempotencyStore
from tests.fixtures.valkey import ValkeyHandle

LEASE_S = 0.6


@pytest.fixture
def store(valkey_server: ValkeyHandle) -> Iterator[IdempotencyStore]:
    s = IdempotencyStore.from_url(
        valkey_server.url, namespace=f"lease{uuid.uuid4().hex[:8]}", lease_s=LEASE_S
    )
    yield s
    s.close()


def _slow_registry(calls: list[int], started: threading.Event) -> ToolRegistry:
    @tool(idempotent=True)
    def sync_up(value: int, ctx: ToolContext) -> dict[str, Any]:
        """A slow, retry-safe call (3 leases long)."""
        calls.append(value)
        started.set()
        time.sleep(LEASE_S * 3)
        return {"value": value}

    return ToolRegistry([sync_up])


def test_a_call_slower_than_its_lease_is_never_seen_as_lost(store: IdempotencyStore) -> None:
    calls: list[int] = []
    started = threading.Event()
    registry = _slow_registry(calls, started)
    first = GuardedExecutor(registry, store, lease_s=LEASE_S)
    second = GuardedExecutor(registry, store, lease_s=LEASE_S)
    call = ToolCall(tool="sync_up", args={"value": 1})
    out: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: out.update(r=first.execute(call, "retry_safe", thread_id="t-slow"))
    )
    worker.start()
    assert started.wait(10)
    seen = []
    for _ in range(4):  # across more than two lease lengths
        time.sleep(LEASE_S * 0.6)
        seen.append(second.execute(call, "retry_safe", thread_id="t-slow").status)
    worker.join()
    assert out["r"].status == "ok"
    assert set(seen) == {"in_flight"}, seen  # never expired, never run again beside it
    assert calls == [1]
    assert second.execute(call, "retry_safe", thread_id="t-slow").status == "replayed"


def test_a_lost_token_cannot_renew(store: IdempotencyStore) -> None:
    key = f"{store.namespace}:idem:{uuid.uuid4().hex}"
    begun = store.begin(key, "fp", LEASE_S)
    assert begun.token and store.renew(key, begun.token, LEASE_S)
    assert not store.renew(key, "someone-else", LEASE_S)
    assert store.complete(key, begun.token, {"ok": True})
    assert not store.renew(key, begun.token, LEASE_S)  # completed: nothing to renew


def test_an_async_call_keeps_its_lease_too(valkey_server: ValkeyHandle) -> None:
    async def scenario() -> tuple[str, list[str]]:
        store = AsyncIdempotencyStore.from_url(
            valkey_server.url, namespace=f"alease{uuid.uuid4().hex[:8]}", lease_s=LEASE_S
        )

        @tool(idempotent=True)
        async def slow(value: int, ctx: ToolContext) -> int:
            """Async and slow."""
            await asyncio.sleep(LEASE_S * 3)
            return value

        ex = GuardedExecutor(ToolRegistry([slow]), store, lease_s=LEASE_S)
        call = ToolCall(tool="slow", args={"value": 2})
        task = asyncio.create_task(ex.aexecute(call, "retry_safe", thread_id="t-async"))
        await asyncio.sleep(0.1)
        seen = []
        for _ in range(4):
            await asyncio.sleep(LEASE_S * 0.6)
            seen.append((await ex.aexecute(call, "retry_safe", thread_id="t-async")).status)
        result = await task
        await store.close()
        return result.status, seen

    status, seen = asyncio.run(scenario())
    assert status == "ok" and set(seen) == {"in_flight"}, seen
