"""The approval node under LangGraph's own resume protocol (``Command(resume=...)``), as
LangGraph Server drives it: every answer reaches the ledger once, however often the node
is replayed, and only a valid one from a server-authenticated approver lets the action run.
The server's authenticated user is passed the way langgraph-api passes it
(``langgraph_auth_user`` in the configurable, which clients cannot set)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from agentflow.checkpoints.ledger import Ledger
from agentflow.settings import Settings
from graphs import approvals_demo

SAM = {"identity": "sam", "permissions": ["approve"]}


def _graph(tmp_path: Path, valkey_server: Any, monkeypatch: Any) -> tuple[Any, Ledger]:
    monkeypatch.setenv("AGENTFLOW_DATA_DIR", str(tmp_path))
    settings = Settings(data_dir=tmp_path, redis_url=valkey_server.url, namespace=tmp_path.name)
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    ledger.setup()
    graph = approvals_demo.build(settings=settings, recorder=ledger)[0].compile(
        checkpointer=InMemorySaver()
    )
    return graph, ledger


def test_each_answer_is_recorded_once_across_replays(
    tmp_path: Path, valkey_server: Any, monkeypatch: Any
) -> None:
    graph, ledger = _graph(tmp_path, valkey_server, monkeypatch)
    config: Any = {
        "configurable": {
            "thread_id": "t-approval",
            "langgraph_auth_user": SAM,
            "langgraph_auth_permissions": SAM["permissions"],
        }
    }

    out = graph.invoke({"messages": [("user", "send $25 to sam@example.com")]}, config)
    request = out["__interrupt__"][0].value
    # The body names someone else: the server's user is who answers.
    answer = {"approval_id": request["approval_id"], "decision": "approve", "approver": "cfo"}
    for wrong in ("0" * 64, "f" * 64):  # two refusals, then the right digest
        out = graph.invoke(Command(resume={**answer, "digest": wrong}), config)
        assert out["__interrupt__"] and approvals_demo.payments() == []
    out = graph.invoke(Command(resume={**answer, "digest": request["digest"]}), config)
    assert "__interrupt__" not in out and len(approvals_demo.payments()) == 1

    rows = ledger.approvals(thread_id="t-approval")
    assert sorted(a.decision for a in rows) == ["approve", "refused", "refused"], rows
    assert [a.approver for a in rows if a.decision == "approve"] == ["sam"]
    assert out["approvals"][0]["approver"] == "sam"
    ledger.close()


def test_a_resume_without_an_authenticated_approver_runs_nothing(
    tmp_path: Path, valkey_server: Any, monkeypatch: Any
) -> None:
    """Right id, right digest, but nobody authenticated it: the gate refuses it and waits
    on, and nothing is paid."""
    graph, ledger = _graph(tmp_path, valkey_server, monkeypatch)
    config: Any = {"configurable": {"thread_id": "t-forged"}}
    out = graph.invoke({"messages": [("user", "send $25 to sam@example.com")]}, config)
    request = out["__interrupt__"][0].value
    answer = {
        "approval_id": request["approval_id"],
        "decision": "approve",
        "approver": "sam",
        "digest": request["digest"],
    }
    out = graph.invoke(Command(resume=answer), config)
    assert out["__interrupt__"] and approvals_demo.payments() == []
    rows = ledger.approvals(thread_id="t-forged")
    assert [r.decision for r in rows] == ["refused"], rows
    assert "not accepted for an authenticated approver" in (rows[0].reason or "")
    ledger.close()


def test_a_recorder_in_a_clients_config_is_not_used() -> None:
    """LangGraph Server merges a client's config into the run's: JSON under ``recorder``
    must not replace the process's own recorder (it would break every later answer)."""
    from agentflow.nodes._common import NodeEnv
    from agentflow.recording import NullRecorder

    own = NullRecorder()
    env = NodeEnv(recorder=own)
    assert env.recorder_for({"configurable": {"recorder": "x"}}) is own
    assert env.recorder_for({"configurable": {"recorder": {"decision": 1}}}) is own
    other = NullRecorder()
    assert env.recorder_for({"configurable": {"recorder": other}}) is other
