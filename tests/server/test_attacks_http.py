"""Attacks on the HTTP API, the way a hostile client on the network would make them.

The real support agent (MiniLM heads, SQLite, Valkey; a fake chat model for the LLM)
behind the real app, in process and on uvicorn. Every route is tried with no token, a
wrong one, and a valid token that lacks the route's scope; a customer tries to act for,
read and write into another customer's thread; an approver's name is forged; a body is
huge; the Host is a rebinding attacker's; two answers race; a server-side failure is
provoked to see what it tells the caller. After each, refunds are counted in the back
office's own database and the thread's checkpoint is compared. Each attempt goes into
the run's attack table (tests/attacks.py).
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from agentflow.checkpoints import Ledger, setup_savers
from agentflow.runtime import AgentRuntime
from agentflow.server import create_app
from agentflow.server.auth import hash_token
from agentflow.settings import Settings
from tests.attacks import record
from tests.server.conftest import SupportEnv, auth, refund_count

REFUND = "Order 58812 arrived damaged, I want a refund of $25"
ENTRY = "HTTP API"


def _waiting(client: TestClient, who: str = "alex", message: str = REFUND) -> dict[str, Any]:
    res = client.post("/runs", json={"message": message}, headers=auth(who))
    assert res.status_code == 200, res.text
    assert res.json()["status"] == "waiting_approval", res.json()
    return dict(res.json())


def _answer(pending: dict[str, Any], **changes: Any) -> dict[str, Any]:
    base = {"approval_id": pending["approval_id"], "decision": "approve"}
    return {**base, "digest": pending["digest"], **changes}


def _unchanged(runtime: AgentRuntime, env: SupportEnv, thread_id: str) -> tuple[Any, ...]:
    snap = runtime.graph.get_state({"configurable": {"thread_id": thread_id}})
    checkpoint = snap.config["configurable"].get("checkpoint_id") if snap.config else None
    return checkpoint, refund_count(env), len(runtime.ledger.approvals(thread_id=thread_id))


ROUTES = [
    ("post", "/runs", lambda t, p: {"json": {"message": REFUND}}),
    ("get", "/runs/{t}", lambda t, p: {}),
    ("get", "/approvals", lambda t, p: {}),
    ("post", "/approvals/{t}", lambda t, p: {"json": _answer(p)}),
]
BAD_TOKENS = [
    ("no token", {}),
    ("wrong token", {"Authorization": "Bearer guessed-token"}),
    ("not bearer", {"Authorization": "Basic c2FtOnB3"}),
]


def test_every_route_refuses_a_missing_or_wrong_token(
    client: TestClient, runtime: AgentRuntime, support_env: SupportEnv
) -> None:
    run = _waiting(client)
    thread, pending = run["thread_id"], run["pending_approval"]
    for label, headers in BAD_TOKENS:
        for method, path, kwargs in ROUTES:
            before = _unchanged(runtime, support_env, thread)
            url = path.format(t=thread)
            res = getattr(client, method)(url, headers=headers, **kwargs(thread, pending))
            refused = res.status_code == 401 and _unchanged(runtime, support_env, thread) == before
            # A 401 says what to send, and nothing of the thread it was aimed at.
            leaked = REFUND in res.text or pending["digest"] in res.text
            record(f"{label}: {method.upper()} {path}", ENTRY, refused and not leaked, "401")
            assert refused and not leaked, (label, method, path, res.status_code, res.text)


SCOPE_CASES = [
    ("auditor", "post", "/runs", "run"),
    ("alex", "post", "/approvals/{t}", "approve"),
    ("sam", "post", "/runs", "run"),  # an approver starts no runs for customers
]


@pytest.mark.parametrize(("who", "method", "path", "scope"), SCOPE_CASES)
def test_a_token_without_the_routes_scope_is_refused(
    client: TestClient,
    runtime: AgentRuntime,
    support_env: SupportEnv,
    who: str,
    method: str,
    path: str,
    scope: str,
) -> None:
    run = _waiting(client)
    thread, pending = run["thread_id"], run["pending_approval"]
    before = _unchanged(runtime, support_env, thread)
    kwargs = {"json": _answer(pending)} if "approvals" in path else {"json": {"message": REFUND}}
    res = getattr(client, method)(path.format(t=thread), headers=auth(who), **kwargs)
    after = _unchanged(runtime, support_env, thread)
    # An authenticated refusal of an answer is on the audit trail (one row); nothing else.
    rows = after[2] - before[2]
    ok = res.status_code == 403 and scope in res.json()["error"] and after[:2] == before[:2]
    record(f"{who} ({scope} missing): {method.upper()} {path}", ENTRY, ok and rows <= 1, "403")
    assert ok and rows <= 1, res.text


def test_a_customer_cannot_read_list_or_write_into_another_customers_thread(
    client: TestClient, runtime: AgentRuntime, support_env: SupportEnv
) -> None:
    run = _waiting(client, "alex")
    thread = run["thread_id"]
    before = _unchanged(runtime, support_env, thread)

    read = client.get(f"/runs/{thread}", headers=auth("mallory"))
    record("read another customer's thread", ENTRY, read.status_code == 404, "404")
    assert read.status_code == 404 and REFUND not in read.text

    listed = client.get("/approvals", headers=auth("mallory"))
    visible = {p["thread_id"] for p in listed.json()}
    record("list another customer's approvals", ENTRY, thread not in visible, "not listed")
    assert listed.status_code == 200 and thread not in visible
    assert thread in {p["thread_id"] for p in client.get("/approvals", headers=auth("alex")).json()}

    body = {"message": "cancel my plan now", "thread_id": thread}
    write = client.post("/runs", json=body, headers=auth("mallory"))
    ok = write.status_code == 404 and _unchanged(runtime, support_env, thread) == before
    record("write into another customer's thread", ENTRY, ok, "404")
    assert ok, write.text
    # A thread that does not exist answers the same: no probing for which ids do.
    made_up = client.post(
        "/runs", json={**body, "thread_id": "t_madeup00000"}, headers=auth("mallory")
    )
    assert (
        made_up.status_code == 404
        and made_up.json()["error"].replace("t_madeup00000", thread) == write.json()["error"]
    )

    # A read-only token writes no rows into a thread it cannot see, not even refusals.
    rows = len(runtime.ledger.approvals(thread_id=thread))
    pending = run["pending_approval"]
    res = client.post(f"/approvals/{thread}", json=_answer(pending), headers=auth("auditor"))
    ok = res.status_code == 403 and len(runtime.ledger.approvals(thread_id=thread)) == rows
    record("refusal rows on an unseen thread", ENTRY, ok, "403, nothing written")
    assert ok, res.text


def test_a_run_acts_for_the_tokens_customer_never_the_bodys(
    client: TestClient, runtime: AgentRuntime
) -> None:
    body = {"message": "where is my order?", "customer": {"email": "alex@example.com"}}
    forged = client.post("/runs", json=body, headers=auth("mallory"))
    record("act for another customer (body)", ENTRY, forged.status_code == 422, "422")
    assert forged.status_code == 422 and "customer" in forged.json()["error"]
    res = client.post("/runs", json={"message": "where is my order?"}, headers=auth("mallory"))
    assert res.status_code == 200, res.text
    state = runtime.graph.get_state({"configurable": {"thread_id": res.json()["thread_id"]}})
    assert state.values["customer"] == {"email": "mallory@example.com", "principal": "mallory"}


def test_a_forged_approver_name_is_refused_and_recorded_under_the_real_one(
    client: TestClient, runtime: AgentRuntime, support_env: SupportEnv
) -> None:
    run = _waiting(client)
    thread, pending = run["thread_id"], run["pending_approval"]
    before = refund_count(support_env)
    res = client.post(
        f"/approvals/{thread}", json=_answer(pending, approver="cfo"), headers=auth("sam")
    )
    refused = [a for a in runtime.ledger.approvals(thread_id=thread) if a.decision == "refused"]
    ok = res.status_code == 403 and refund_count(support_env) == before
    ok = ok and [a.approver for a in refused] == ["sam"]
    record("forged approver name", ENTRY, ok, "403, recorded as sam")
    assert ok, (res.text, refused)


def test_an_edit_by_a_customer_that_raises_the_amount_is_refused(
    client: TestClient, runtime: AgentRuntime, support_env: SupportEnv
) -> None:
    run = _waiting(client)
    thread, pending = run["thread_id"], run["pending_approval"]
    before = _unchanged(runtime, support_env, thread)
    raised = _answer(pending, decision="edit", args={**pending["args"], "amount_cents": 90000})
    res = client.post(f"/approvals/{thread}", json=raised, headers=auth("alex"))
    after = _unchanged(runtime, support_env, thread)
    ok = res.status_code == 403 and after[:2] == before[:2]
    record("edit raising the amount, no approve scope", ENTRY, ok, "403")
    assert ok, res.text


def test_a_10_mb_body_and_a_rebinding_host_are_refused_unread(
    client: TestClient, support_env: SupportEnv
) -> None:
    before = refund_count(support_env)
    big = b'{"message": "' + b"a" * (10 * 1024 * 1024) + b'"}'
    for who in (None, "alex"):
        headers = {"Content-Type": "application/json", **(auth(who) if who else {})}
        res = client.post("/runs", content=big, headers=headers)
        # Refused on its declared length, before a byte of it or the token is looked at.
        record(f"10 MB body ({who or 'no token'})", ENTRY, res.status_code == 413, "413")
        assert res.status_code == 413
    res = client.get("/approvals", headers={"Host": "rebind.example:8000", **auth("sam")})
    record("DNS-rebinding Host header", ENTRY, res.status_code == 400, "400")
    assert res.status_code == 400 and refund_count(support_env) == before


def test_two_answers_at_once_apply_exactly_once(
    live_url: str, runtime: AgentRuntime, support_env: SupportEnv, client: TestClient
) -> None:
    run = _waiting(client)
    thread, pending = run["thread_id"], run["pending_approval"]
    before = refund_count(support_env)
    barrier = threading.Barrier(2)
    codes: dict[str, int] = {}

    def send(who: str, decision: str) -> None:
        barrier.wait()
        res = httpx.post(
            f"{live_url}/approvals/{thread}",
            json=_answer(pending, decision=decision),
            headers=auth(who),
            timeout=60,
        )
        codes[decision] = res.status_code

    workers = [
        threading.Thread(target=send, args=("sam", "approve")),
        threading.Thread(target=send, args=("eve", "reject")),
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    won = [d for d, c in codes.items() if c == 200]
    paid = refund_count(support_env) - before
    ok = len(won) == 1 and paid == (1 if won == ["approve"] else 0)
    record("approve and reject at once", "HTTP API (uvicorn)", ok, f"{won} won")
    assert ok, (codes, paid)
    replay = httpx.post(
        f"{live_url}/approvals/{thread}", json=_answer(pending), headers=auth("sam"), timeout=60
    )
    again = refund_count(support_env) - before
    record("replayed answer", "HTTP API (uvicorn)", replay.status_code == 404 and again == paid)
    assert replay.status_code == 404 and again == paid


def test_a_server_side_failure_tells_the_caller_no_internal_text(
    tmp_path: Path, valkey_server: Any
) -> None:
    """The database is broken under a running server: the caller gets a reference,
    not the SQL, the path or the driver's message (those go to the log)."""
    db = tmp_path / "agentflow.db"
    settings = Settings(
        data_dir=tmp_path / "af",
        database_url=f"sqlite:///{db}",
        redis_url=valkey_server.url,
        tokens={"kim": {"sha256": hash_token("k"), "scopes": ["run", "read"]}},
    )
    setup_savers(settings.resolved_database_url)
    Ledger.from_settings(settings).setup()  # a worker refuses an unmigrated database
    with AgentRuntime.open("graphs/approvals_demo.py", settings=settings) as runtime:
        app = create_app(
            settings, runtime_factory=lambda _g, _s: nullcontext(runtime), graph="approvals_demo"
        )
        with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
            kim = {"Authorization": "Bearer k"}
            ok = c.post("/runs", json={"message": "send $5 to a@b.c"}, headers=kim)
            assert ok.status_code == 200, ok.text
            # The database breaks under the running server (a table dropped by hand): the
            # next read of the thread's approvals fails inside the driver.
            with sqlite3.connect(db) as conn:
                conn.execute("DROP TABLE approvals")
            res = c.get(f"/runs/{ok.json()['thread_id']}", headers=kim)
            run = c.post("/runs", json={"message": "send $6 to a@b.c"}, headers=kim)
    body = res.text + run.text
    leaked = [w for w in (str(tmp_path), "SELECT", "sqlite3", "no such table") if w in body]
    ok_ = res.status_code >= 500 and "ref " in res.json()["error"] and not leaked
    record("provoke an internal error", ENTRY, ok_, f"{res.status_code}, no internal text")
    assert ok_, (res.status_code, body, leaked)
