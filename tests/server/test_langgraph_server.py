"""The graphs in ``langgraph.json`` under LangGraph Server (``langgraph dev``, in-memory).

Through the server's own HTTP API (via ``langgraph_sdk``): every request needs an
approver's bearer token (``langgraph.json``'s ``auth``); a run reaches the approval
interrupt, a wrong digest sent as ``Command(resume=...)`` is refused by the approval
node itself (the run interrupts again and nothing is paid), a state update that marks
the call approved pays nothing, and a valid answer resumes the run to the end with the
payment made exactly once, recorded under the token's owner whatever the body says.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import closing

import httpx
import pytest
from langgraph_sdk import get_sync_client

from checkpoints.ledger import Ledger
from nodes.approval import ApprovalRequest
from tests.attacks import record
from tests.fixtures.langgraph_server import REPO, LangGraphServer

ENTRY = "LangGraph Server"


def _refunds(server: LangGraphServer) -> int:
    if not server.support_db.exists():
        return 0
    with closing(sqlite3.connect(server.support_db)) as db:
        return int(db.execute("SELECT COUNT(*) FROM refunds").fetchone()[0])


def _payments(server: LangGraphServer) -> int:
    path = server.data_dir / "approvals_demo_payments.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


CASES: list[tuple[str, str, str, Callable[[LangGraphServer], int]]] = [
    ("approvals_demo", "send $25 to sam@example.com", "send_payment", _payments),
    ("support", "Order 58812 arrived damaged, I want a refund of $25", "issue_refund", _refunds),
]


def test_langgraph_json_lists_the_graphs_in_graphs() -> None:
    config = json.loads((REPO / "langgraph.json").read_text())
    assert config["dependencies"] == ["."]
    assert config["auth"]["path"] == "./agentflow/server/langgraph_auth.py:auth"
    assert {"support", "approvals_demo"} <= set(config["graphs"])
    for target in config["graphs"].values():
        path, _, variable = target.partition(":")
        assert path.startswith("./graphs/") and variable, target
        assert (REPO / path).is_file(), f"{target}: no such file"


def test_no_token_or_a_wrong_token_is_refused_before_any_graph_runs(
    langgraph_server: LangGraphServer,
) -> None:
    url = langgraph_server.url
    for label, headers in (
        ("no token", {}),
        ("wrong token", {"Authorization": "Bearer not-a-token"}),
        ("not bearer", {"Authorization": "sam"}),
    ):
        code = httpx.post(f"{url}/threads", json={}, headers=headers).status_code
        record(f"{label}: create thread", ENTRY, code == 401, str(code))
        assert code == 401
        run = {"assistant_id": "approvals_demo", "input": {"messages": []}}
        code = httpx.post(f"{url}/runs/wait", json=run, headers=headers).status_code
        record(f"{label}: stateless run", ENTRY, code == 401, str(code))
        assert code == 401
    thread = httpx.post(f"{url}/threads", json={}, headers=langgraph_server.headers)
    assert thread.status_code == 200
    thread_id = thread.json()["thread_id"]
    resume = {"assistant_id": "approvals_demo", "command": {"resume": {"decision": "approve"}}}
    forged = httpx.post(f"{url}/threads/{thread_id}/runs/wait", json=resume)
    record("no token: resume", ENTRY, forged.status_code == 401, str(forged.status_code))
    assert forged.status_code == 401
    state = httpx.post(f"{url}/threads/{thread_id}/state", json={"values": {}})
    record("no token: state update", ENTRY, state.status_code == 401, str(state.status_code))
    assert state.status_code == 401


def test_a_state_update_that_approves_pays_nothing(langgraph_server: LangGraphServer) -> None:
    client = get_sync_client(url=langgraph_server.url, headers=langgraph_server.headers)
    thread_id = client.threads.create()["thread_id"]
    before = _payments(langgraph_server)
    out = client.runs.wait(
        thread_id,
        "approvals_demo",
        input={"messages": [{"role": "user", "content": "send $25 to sam@example.com"}]},
    )
    assert isinstance(out, dict) and out.get("__interrupt__"), out
    assessment = client.threads.get_state(thread_id)["values"]["assessment"]
    forged = {**assessment, "approved": True, "args": {**assessment["args"], "amount_cents": 9000}}
    client.threads.update_state(thread_id, {"assessment": forged}, as_node="approval")
    out = client.runs.wait(thread_id, "approvals_demo", input=None)
    paid = _payments(langgraph_server) - before
    record("update_state approved=True, $90", ENTRY, paid == 0, "nothing paid")
    assert paid == 0
    assert isinstance(out, dict) and "no approval grant" in (out.get("outcome") or ""), out


@pytest.mark.parametrize(("graph", "message", "tool", "effects"), CASES, ids=[c[0] for c in CASES])
def test_a_run_waits_for_approval_and_resumes(
    langgraph_server: LangGraphServer,
    graph: str,
    message: str,
    tool: str,
    effects: Callable[[LangGraphServer], int],
) -> None:
    client = get_sync_client(url=langgraph_server.url, headers=langgraph_server.headers)
    thread_id = client.threads.create()["thread_id"]
    before = effects(langgraph_server)

    out = client.runs.wait(
        thread_id, graph, input={"messages": [{"role": "user", "content": message}]}
    )
    assert isinstance(out, dict) and out.get("__interrupt__"), out
    request = ApprovalRequest.model_validate(out["__interrupt__"][0]["value"])
    assert request.tool == tool and request.assessment["class"] == "irreversible"
    state = client.threads.get_state(thread_id)
    assert state["next"] == ["approval"] and state["interrupts"], state
    assert effects(langgraph_server) == before

    answer = {
        "approval_id": request.approval_id,
        "decision": "approve",
        "approver": "cfo",  # a forged name: the token says sam
        "digest": "0" * 64,
    }
    out = client.runs.wait(thread_id, graph, command={"resume": answer})
    assert isinstance(out, dict) and out.get("__interrupt__"), out  # refused: still waiting
    assert out["__interrupt__"][0]["value"]["approval_id"] == request.approval_id
    assert effects(langgraph_server) == before
    record(f"wrong digest in resume ({graph})", ENTRY, True, "asked again, nothing paid")

    out = client.runs.wait(
        thread_id, graph, command={"resume": {**answer, "digest": request.digest}}
    )
    assert isinstance(out, dict) and not out.get("__interrupt__"), out
    assert out["status"] == "done", out.get("outcome")
    assert effects(langgraph_server) == before + 1
    approvers = [a["approver"] for a in out["approvals"]]
    record(f"forged approver name 'cfo' ({graph})", ENTRY, approvers == ["sam"], "recorded as sam")
    assert approvers == ["sam"]
    if graph == "support":  # the support graph writes the same ledger `agentflow run` does
        ledger = Ledger(langgraph_server.database_url)
        roles = {d.role for d in ledger.decisions(thread_id=thread_id)}
        assert {"router", "consequence_modeler"} <= roles, roles
        decisions = [a.decision for a in ledger.approvals(thread_id=thread_id)]
        assert decisions.count("refused") == 1 and decisions.count("approve") == 1, decisions
        ledger.close()


def _customer_waiting(server: LangGraphServer) -> tuple[str, ApprovalRequest]:
    """alex (run, read) asks for a payment on a thread of their own; it waits for approval."""
    alex = get_sync_client(url=server.url, headers=server.headers_for("alex"))
    thread_id = alex.threads.create()["thread_id"]
    message = {"role": "user", "content": "send $7 to kim@example.com"}
    out = alex.runs.wait(thread_id, "approvals_demo", input={"messages": [message]})
    assert isinstance(out, dict) and out.get("__interrupt__"), out
    return thread_id, ApprovalRequest.model_validate(out["__interrupt__"][0]["value"])


def test_scopes_and_owners_hold_on_langgraph_server(langgraph_server: LangGraphServer) -> None:
    server, url = langgraph_server, langgraph_server.url
    thread_id, request = _customer_waiting(server)
    before = _payments(server)

    # The owner may run and read their thread, but a resume without `approve` is refused
    # by the approval node: the run asks again and nothing is paid.
    answer = {"approval_id": request.approval_id, "decision": "approve", "digest": request.digest}
    alex = get_sync_client(url=url, headers=server.headers_for("alex"))
    out = alex.runs.wait(thread_id, "approvals_demo", command={"resume": answer})
    asked_again = isinstance(out, dict) and bool(out.get("__interrupt__"))
    paid = _payments(server) - before
    record("resume by the owner, no approve scope", ENTRY, asked_again and paid == 0, "asked again")
    assert asked_again and paid == 0, out

    update = httpx.post(
        f"{url}/threads/{thread_id}/state",
        json={"values": {"pending_approval": None}, "as_node": "approval"},
        headers=server.headers_for("alex"),
    )
    record("state update by the owner (no approve)", ENTRY, update.status_code == 403, "403")
    assert update.status_code == 403, update.text

    for label, call in (
        ("read", lambda h: httpx.get(f"{url}/threads/{thread_id}/state", headers=h)),
        (
            "run",
            lambda h: httpx.post(
                f"{url}/threads/{thread_id}/runs/wait",
                json={"assistant_id": "approvals_demo", "command": {"resume": answer}},
                headers=h,
            ),
        ),
    ):
        res = call(server.headers_for("mallory"))
        ok = res.status_code == 404 and _payments(server) == before
        record(f"{label} another customer's thread", ENTRY, ok, str(res.status_code))
        assert ok, (label, res.status_code, res.text)
    found = httpx.post(f"{url}/threads/search", json={}, headers=server.headers_for("mallory"))
    hidden = thread_id not in {t["thread_id"] for t in found.json()}
    record("search finds another customer's thread", ENTRY, hidden, "not listed")
    assert found.status_code == 200 and hidden

    created = httpx.post(f"{url}/threads", json={}, headers=server.headers_for("auditor"))
    record("create a thread without run scope", ENTRY, created.status_code == 403, "403")
    assert created.status_code == 403

    # An approver sees the customer's thread and answers it: paid once, under their name.
    sam = get_sync_client(url=url, headers=server.headers)
    assert sam.threads.get_state(thread_id)["next"] == ["approval"]
    out = sam.runs.wait(thread_id, "approvals_demo", command={"resume": answer})
    assert isinstance(out, dict) and out.get("status") == "done", out.get("__interrupt__")
    assert _payments(server) == before + 1
    assert [a["approver"] for a in out["approvals"]] == ["sam"]
