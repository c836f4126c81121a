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

from agentflow.checkpoints.ledger import Ledger
from agentflow.nodes.approval import ApprovalRequest
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

    # The owner may run and read their thread, but not resume it: that is an approver's.
    answer = {"approval_id": request.approval_id, "decision": "approve", "digest": request.digest}
    resume = {"assistant_id": "approvals_demo", "command": {"resume": answer}}
    own = httpx.post(
        f"{url}/threads/{thread_id}/runs/wait", json=resume, headers=server.headers_for("alex")
    )
    paid = _payments(server) - before
    record("resume by the owner, no approve scope", ENTRY, own.status_code == 403 and not paid)
    assert own.status_code == 403 and paid == 0, own.text

    update = httpx.post(
        f"{url}/threads/{thread_id}/state",
        json={"values": {"pending_approval": None}, "as_node": "approval"},
        headers=server.headers_for("alex"),
    )
    record("state update by the owner (no approve)", ENTRY, update.status_code == 403, "403")
    assert update.status_code == 403, update.text

    message = {"messages": [{"role": "user", "content": "send $9 to mallory@example.com"}]}
    for label, call in (
        ("read", lambda h: httpx.get(f"{url}/threads/{thread_id}/state", headers=h)),
        (
            "run",
            lambda h: httpx.post(
                f"{url}/threads/{thread_id}/runs/wait",
                json={"assistant_id": "approvals_demo", "input": message},
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

    _closed_doors(server)

    # An approver sees the customer's thread and answers it: paid once, under their name.
    sam = get_sync_client(url=url, headers=server.headers)
    assert sam.threads.get_state(thread_id)["next"] == ["approval"]
    out = sam.runs.wait(thread_id, "approvals_demo", command={"resume": answer})
    assert isinstance(out, dict) and out.get("status") == "done", out.get("__interrupt__")
    assert _payments(server) == before + 1
    assert [a["approver"] for a in out["approvals"]] == ["sam"]


def _closed_doors(server: LangGraphServer) -> None:
    """What a customer's token must not reach: other state keys in a run's input, a thread
    planted in someone else's name, the assistants, the store, crons."""
    url, alex = server.url, server.headers_for("alex")
    forged = {
        "assistant_id": "approvals_demo",
        "input": {"messages": [], "customer": {"email": "victim@example.com"}},
    }
    res = httpx.post(f"{url}/runs/wait", json=forged, headers=alex)
    record("run input with a forged customer", ENTRY, res.status_code == 403, "403")
    assert res.status_code == 403, res.text

    planted = {
        "assistant_id": "approvals_demo",
        "input": {"messages": [{"role": "user", "content": "hello"}]},
        "metadata": {"owner": "mallory"},
        "if_not_exists": "create",
    }
    tid = "00000000-0000-4000-8000-00000000a1e5"
    res = httpx.post(f"{url}/threads/{tid}/runs/wait", json=planted, headers=alex)
    assert res.status_code == 200, res.text
    mine = httpx.get(f"{url}/threads/{tid}", headers=alex)
    theirs = httpx.get(f"{url}/threads/{tid}", headers=server.headers_for("mallory"))
    ok = mine.status_code == 200 and mine.json()["metadata"]["owner"] == "alex"
    ok = ok and theirs.status_code == 404
    record("plant a thread in another's name", ENTRY, ok, "owned by the caller")
    assert ok, (mine.text, theirs.status_code)

    assistants = httpx.post(f"{url}/assistants/search", json={}, headers=alex)
    assert assistants.status_code == 200, assistants.text
    aid = next(a["assistant_id"] for a in assistants.json() if a["graph_id"] == "approvals_demo")
    patch = httpx.patch(f"{url}/assistants/{aid}", json={"graph_id": "support"}, headers=alex)
    record("rewire an assistant", ENTRY, patch.status_code == 403, "403")
    assert patch.status_code == 403, patch.text
    item = {"namespace": ["x"], "key": "k", "value": {"v": 1}}
    store = httpx.put(f"{url}/store/items", json=item, headers=alex)
    record("write the server's store", ENTRY, store.status_code == 403, "403")
    assert store.status_code == 403, store.text
    cron = {"assistant_id": "approvals_demo", "schedule": "* * * * *", "input": {"messages": []}}
    res = httpx.post(f"{url}/runs/crons", json=cron, headers=alex)
    record("schedule a cron", ENTRY, res.status_code in (403, 404), str(res.status_code))
    assert res.status_code in (403, 404), res.text  # 404: this server has no crons at all
