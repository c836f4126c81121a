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
from tests.fixtures.langgraph_server import REPO, LangGraphServer


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
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "sam"}):
        assert httpx.post(f"{url}/threads", json={}, headers=headers).status_code == 401
        run = {"assistant_id": "approvals_demo", "input": {"messages": []}}
        assert httpx.post(f"{url}/runs/wait", json=run, headers=headers).status_code == 401
    thread = httpx.post(f"{url}/threads", json={}, headers=langgraph_server.headers)
    assert thread.status_code == 200
    thread_id = thread.json()["thread_id"]
    resume = {"assistant_id": "approvals_demo", "command": {"resume": {"decision": "approve"}}}
    forged = httpx.post(f"{url}/threads/{thread_id}/runs/wait", json=resume)
    assert forged.status_code == 401
    state = httpx.post(f"{url}/threads/{thread_id}/state", json={"values": {}})
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
    assert _payments(langgraph_server) == before
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

    out = client.runs.wait(
        thread_id, graph, command={"resume": {**answer, "digest": request.digest}}
    )
    assert isinstance(out, dict) and not out.get("__interrupt__"), out
    assert out["status"] == "done", out.get("outcome")
    assert effects(langgraph_server) == before + 1
    assert [a["approver"] for a in out["approvals"]] == ["sam"]
    if graph == "support":  # the support graph writes the same ledger `agentflow run` does
        ledger = Ledger(langgraph_server.database_url)
        roles = {d.role for d in ledger.decisions(thread_id=thread_id)}
        assert {"router", "consequence_modeler"} <= roles, roles
        decisions = [a.decision for a in ledger.approvals(thread_id=thread_id)]
        assert decisions.count("refused") == 1 and decisions.count("approve") == 1, decisions
        ledger.close()
