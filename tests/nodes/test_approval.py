"""The approval node under LangGraph's own resume protocol (``Command(resume=...)``), as
LangGraph Server drives it: every answer reaches the ledger once, however often the node
is replayed, and only a valid one lets the action run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from agentflow.settings import Settings
from checkpoints.ledger import Ledger
from graphs import approvals_demo


def test_each_answer_is_recorded_once_across_replays(
    tmp_path: Path, valkey_server: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("AGENTFLOW_DATA_DIR", str(tmp_path))
    settings = Settings(data_dir=tmp_path, redis_url=valkey_server.url, namespace=tmp_path.name)
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    ledger.setup()
    graph = approvals_demo.build(settings=settings, recorder=ledger)[0].compile(
        checkpointer=InMemorySaver()
    )
    config: Any = {"configurable": {"thread_id": "t-approval"}}

    out = graph.invoke({"messages": [("user", "send $25 to sam@example.com")]}, config)
    request = out["__interrupt__"][0].value
    answer = {"approval_id": request["approval_id"], "decision": "approve", "approver": "sam"}
    for wrong in ("0" * 64, "f" * 64):  # two refusals, then the right digest
        out = graph.invoke(Command(resume={**answer, "digest": wrong}), config)
        assert out["__interrupt__"] and approvals_demo.payments() == []
    out = graph.invoke(Command(resume={**answer, "digest": request["digest"]}), config)
    assert "__interrupt__" not in out and len(approvals_demo.payments()) == 1

    decisions = [a.decision for a in ledger.approvals(thread_id="t-approval")]
    assert sorted(decisions) == ["approve", "refused", "refused"], decisions
    ledger.close()
