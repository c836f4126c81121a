"""Keys name the intended action: a replay of a turn is the same call, a new request in
the same thread is a new one (issue: a deliberate repeat was silently swallowed).

The real support agent (MiniLM heads, SQLite, Valkey; the LLM a fake chat model); refunds
are counted in the back office's own database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from agentflow.errors import UnfinishedRunError
from agentflow.nodes.approval import ApprovalAnswer
from agentflow.runtime import AgentRuntime
from agentflow.tools.keys import derive_key
from graphs import support
from tests.fixtures.support_env import support_environment

REFUND = "Order 58812 arrived broken. I want a refund of $25."


@pytest.fixture(scope="module")
def rt(
    tmp_path_factory: pytest.TempPathFactory, valkey_server: Any, heads_cache: Path
) -> Iterator[AgentRuntime]:
    tmp = tmp_path_factory.mktemp("turns")
    with support_environment(tmp, valkey_server.url, heads_cache, namespace="turns") as s:
        llm = FakeListChatModel(responses=["Thanks, that is done."])
        with AgentRuntime.open("graphs/support.py", settings=s, llm=llm) as runtime:
            yield runtime


def _approve(rt: AgentRuntime, thread_id: str, pending: dict[str, Any]) -> Any:
    answer = ApprovalAnswer(
        approval_id=pending["approval_id"],
        decision="approve",
        approver="sam",
        digest=pending["digest"],
    )
    return rt.answer(thread_id, answer)


def _refunds() -> int:
    return len(support.store().refunds("58812"))


def test_the_same_request_again_in_the_same_thread_is_a_new_refund(rt: AgentRuntime) -> None:
    before = _refunds()
    first = rt.run(REFUND)
    assert first.status == "waiting_approval" and first.pending_approval
    assert _approve(rt, first.thread_id, first.pending_approval).status == "done"
    assert _refunds() == before + 1

    again = rt.run(REFUND, thread_id=first.thread_id)  # a day later, word for word
    assert again.status == "waiting_approval" and again.pending_approval, again.outcome
    assert again.pending_approval["approval_id"] != first.pending_approval["approval_id"]
    done = _approve(rt, first.thread_id, again.pending_approval)
    assert done.status == "done", done.outcome
    assert _refunds() == before + 2
    statuses = [o["status"] for o in done.observations if o["tool"] == "issue_refund"]
    assert statuses == ["ok", "ok"], statuses  # not "replayed": it was paid


def test_a_replay_of_the_same_turn_pays_once(rt: AgentRuntime) -> None:
    before = _refunds()
    run = rt.run(REFUND)
    assert run.pending_approval
    assert _approve(rt, run.thread_id, run.pending_approval).status == "done"
    config = {"configurable": {"thread_id": run.thread_id}}
    # LangGraph re-runs the turn from the checkpoint before the payment.
    history = list(rt.graph.get_state_history(config))
    before_act = next(s for s in history if s.next == ("act",))
    out = rt.graph.invoke(None, before_act.config)
    assert _refunds() == before + 1
    statuses = [o["status"] for o in out["observations"] if o["tool"] == "issue_refund"]
    assert statuses[-1] == "replayed", statuses


def test_the_turn_is_part_of_the_key() -> None:
    base = derive_key("ns", "t", 0, "issue_refund", {"a": 1}, turn="m1")
    assert base == derive_key("ns", "t", 0, "issue_refund", {"a": 1}, turn="m1")
    assert base != derive_key("ns", "t", 0, "issue_refund", {"a": 1}, turn="m2")
    assert derive_key("ns", "t", 0, "x", {}) != derive_key("ns", "t", 0, "x", {}, turn="m1")


def test_a_new_message_on_a_thread_stopped_mid_graph_is_refused(rt: AgentRuntime) -> None:
    """A new turn would plan afresh under new keys beside the step that stopped (maybe
    after its effect): the thread must be finished first."""
    run = rt.run(REFUND)
    assert run.pending_approval
    config = {"configurable": {"thread_id": run.thread_id}}
    rt.graph.update_state(config, None, as_node="approval")  # stopped before `act`
    assert rt.graph.get_state(config).next == ("act",)
    before = _refunds()
    with pytest.raises(UnfinishedRunError, match="resume"):
        rt.run("where is my order?", thread_id=run.thread_id)
    assert _refunds() == before
