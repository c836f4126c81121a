"""The graphs in ``langgraph.json`` under LangGraph Server (``langgraph dev``, in-memory).

Through the server's own HTTP API (via ``langgraph_sdk``): a run reaches the approval
interrupt, a wrong digest sent as ``Command(resume=...)`` is refused by the approval
node itself (the run interrupts again and nothing is paid), and a valid answer resumes
the run to the end with the payment made exactly once.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import closing

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
    assert {"support", "approvals_demo"} <= set(config["graphs"])
    for target in config["graphs"].values():
        path, _, variable = target.partition(":")
        assert path.startswith("./graphs/") and variable, target
        assert (REPO / path).is_file(), f"{target}: no such file"


@pytest.mark.parametrize(("graph", "message", "tool", "effects"), CASES, ids=[c[0] for c in CASES])
def test_a_run_waits_for_approval_and_resumes(
    langgraph_server: LangGraphServer,
    graph: str,
    message: str,
    tool: str,
    effects: Callable[[LangGraphServer], int],
) -> None:
    client = get_sync_client(url=langgraph_server.url)
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
        "approver": "sam",
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
