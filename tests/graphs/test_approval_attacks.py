"""Attacks on the approval guarantee, through every in-process way in: graph state written
directly (``update_state``, ``Command(goto=..., update=...)``), a grant for one action used
for another, two answers racing from two runtimes, a replayed resume value. The support
agent runs on real MiniLM heads, SQLite checkpoints and Valkey (the LLM is a fake chat
model), and every effect is counted in the back office's own database. Each attack must
leave the back office unchanged; each goes into the run's attack table (tests/attacks.py).

LangGraph Server's entry point (unauthenticated requests, a forged approver name) is
attacked in tests/server/test_langgraph_server.py; the executor's grant rules (expiry,
one use, other thread or arguments) in tests/tools/test_executor.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from agentflow import Route, ToolContext, agent, tool
from agentflow.errors import ApprovalError
from agentflow.nodes.approval import ApprovalAnswer, accept_answer
from agentflow.runtime import AgentRuntime
from agentflow.settings import Settings
from agentflow.tools.store import IdempotencyStore
from graphs import support
from tests.attacks import record
from tests.fixtures.support_env import support_environment

REFUND = "Order 58812 arrived broken. I want a refund of $25."


@pytest.fixture(scope="module")
def settings(
    tmp_path_factory: pytest.TempPathFactory, valkey_server: Any, heads_cache: Path
) -> Iterator[Settings]:
    with support_environment(
        tmp_path_factory.mktemp("attacks"), valkey_server.url, heads_cache, namespace="attacks"
    ) as s:
        yield s


@pytest.fixture(scope="module")
def rt(settings: Settings) -> Iterator[AgentRuntime]:
    llm = FakeListChatModel(responses=["Thanks, that is done."])
    with AgentRuntime.open("graphs/support.py", settings=settings, llm=llm) as runtime:
        yield runtime


def _refunds() -> int:
    return len(support.store().refunds("58812"))


def _waiting(rt: AgentRuntime) -> tuple[str, dict[str, Any]]:
    res = rt.run(REFUND)
    assert res.status == "waiting_approval" and res.pending_approval, res.outcome
    return res.thread_id, res.pending_approval


def _config(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}


def _forged_assessment(rt: AgentRuntime, thread_id: str, amount: int) -> dict[str, Any]:
    state = rt.graph.get_state(_config(thread_id)).values
    assessment = dict(state["assessment"])
    args = {**assessment["args"], "amount_cents": amount}
    return {**assessment, "args": args, "approved": True, "approved_by": "cfo"}


def _check(attack: str, entry: str, before: int, thread_id: str, rt: AgentRuntime) -> None:
    paid = _refunds() - before
    record(attack, entry, paid == 0, "nothing paid" if paid == 0 else f"{paid} refund(s) paid")
    assert paid == 0, f"{attack}: {paid} refund(s) paid"
    rows = rt.ledger.approvals(thread_id=thread_id)
    assert all(r.decision != "approve" for r in rows), rows  # no approval was recorded


def test_state_update_as_the_approval_node_pays_nothing(rt: AgentRuntime) -> None:
    thread_id, _ = _waiting(rt)
    before = _refunds()
    forged = _forged_assessment(rt, thread_id, 9000)
    rt.graph.update_state(_config(thread_id), {"assessment": forged}, as_node="approval")
    out = rt.graph.invoke(None, _config(thread_id))
    assert "no approval grant" in (out.get("outcome") or ""), out.get("outcome")
    _check("approved=True, $90 via update_state", "custom graph / state", before, thread_id, rt)


def test_state_update_with_the_approved_amount_pays_nothing(rt: AgentRuntime) -> None:
    thread_id, _ = _waiting(rt)
    before = _refunds()
    forged = _forged_assessment(rt, thread_id, 2500)  # the very action, but nobody approved
    rt.graph.update_state(_config(thread_id), {"assessment": forged}, as_node="approval")
    rt.graph.invoke(None, _config(thread_id))
    _check("approved=True, same args, no approver", "custom graph / state", before, thread_id, rt)


def test_command_goto_act_pays_nothing(rt: AgentRuntime) -> None:
    thread_id, _ = _waiting(rt)
    before = _refunds()
    forged = _forged_assessment(rt, thread_id, 2500)
    rt.graph.invoke(Command(goto="act", update={"assessment": forged}), _config(thread_id))
    _check("Command(goto='act')", "custom graph / Command", before, thread_id, rt)


def _accept_without_resuming(rt: AgentRuntime, thread_id: str, pending: dict[str, Any]) -> None:
    """What ``rt.answer`` does before it resumes: accept sam's approval, write its grant."""
    request = rt.pending(thread_id)
    assert request is not None and rt.parts is not None
    answer = ApprovalAnswer(
        approval_id=pending["approval_id"],
        decision="approve",
        approver="sam",
        digest=pending["digest"],
    )
    store = rt.parts.executor.store
    assert isinstance(store, IdempotencyStore)
    accept_answer(store, request, answer, rt.parts.tools, ttl_s=60)


def test_a_grant_for_one_amount_does_not_pay_another(rt: AgentRuntime) -> None:
    """Approve $25 properly, then raise the amount in the state before the call runs."""
    thread_id, pending = _waiting(rt)
    before = _refunds()
    _accept_without_resuming(rt, thread_id, pending)
    forged = _forged_assessment(rt, thread_id, 9000)
    rt.graph.update_state(_config(thread_id), {"assessment": forged}, as_node="approval")
    out = rt.graph.invoke(None, _config(thread_id))
    assert "no approval grant" in (out.get("outcome") or ""), out.get("outcome")
    _check("grant for $25 used for $90", "custom graph / state", before, thread_id, rt)


def test_a_grant_on_one_thread_does_not_pay_on_another(rt: AgentRuntime) -> None:
    first, pending = _waiting(rt)
    second, _ = _waiting(rt)  # the same refund, asked on another thread
    before = _refunds()
    _accept_without_resuming(rt, first, pending)
    forged = _forged_assessment(rt, second, 2500)
    rt.graph.update_state(_config(second), {"assessment": forged}, as_node="approval")
    rt.graph.invoke(None, _config(second))
    _check("thread A's grant used on thread B", "custom graph / state", before, second, rt)


def test_two_racing_answers_apply_exactly_once(settings: Settings, rt: AgentRuntime) -> None:
    """An approval and a rejection of one request, at once, from two runtimes."""
    thread_id, pending = _waiting(rt)
    before = _refunds()
    llm = FakeListChatModel(responses=["Thanks, that is done."])
    outcomes: dict[str, Any] = {}
    start = threading.Barrier(2)

    def answer(rt_x: AgentRuntime, decision: str) -> None:
        start.wait()
        who = "sam" if decision == "approve" else "rita"
        try:
            outcomes[decision] = rt_x.answer(
                thread_id,
                ApprovalAnswer(
                    approval_id=pending["approval_id"],
                    decision=decision,  # type: ignore[arg-type]
                    approver=who,
                    digest=pending["digest"],
                ),
            )
        except ApprovalError as exc:
            outcomes[decision] = exc

    with AgentRuntime.open("graphs/support.py", settings=settings, llm=llm) as other:
        workers = [
            threading.Thread(target=answer, args=(rt, "approve")),
            threading.Thread(target=answer, args=(other, "reject")),
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    refused = [d for d, o in outcomes.items() if isinstance(o, ApprovalError)]
    assert len(refused) == 1, outcomes
    paid = _refunds() - before
    winner = "reject" if refused == ["approve"] else "approve"
    assert paid == (1 if winner == "approve" else 0)
    record("approve and reject at once", "two runtimes", True, f"{winner} won, other refused")


def test_a_replayed_resume_value_pays_once(rt: AgentRuntime) -> None:
    thread_id, pending = _waiting(rt)
    before = _refunds()
    answer = ApprovalAnswer(
        approval_id=pending["approval_id"],
        decision="approve",
        approver="sam",
        digest=pending["digest"],
    )
    assert rt.answer(thread_id, answer).status == "done"
    assert _refunds() == before + 1
    rt.graph.invoke(Command(resume=answer.model_dump(mode="json")), _config(thread_id))
    with pytest.raises(ApprovalError):
        rt.answer(thread_id, answer)
    paid = _refunds() - before - 1
    record("replayed resume value", "custom graph / runtime", paid == 0, "paid once")
    assert paid == 0


def test_lowering_the_assessed_class_in_state_pays_nothing(settings: Settings) -> None:
    """A tool with no declared annotations, judged by the modeler: a state write that calls
    the payment ``safe`` (so that no approval is asked) still finds the modeler's verdict,
    kept in the store, and the executor asks for a grant."""
    wired: list[dict[str, Any]] = []

    @tool()
    def wire_transfer(account: str, amount_cents: int, ctx: ToolContext) -> dict[str, Any]:
        """Send money from the company account to an external bank account."""
        wired.append({"account": account, "amount_cents": amount_cents})
        return {"sent": amount_cents}

    step = {"tool": "wire_transfer", "args": {"account": "DE89 3704", "amount_cents": 50000}}
    plan = json.dumps({"goal": "wire 500 euros", "steps": [step]})
    builder, _ = agent(
        [Route("wire", "send money to a bank account", ("wire 500 to DE89",), target="planner")],
        [wire_transfer],
        name="wires",
        settings=settings,
        llm=FakeListChatModel(responses=[plan, "Done."]),
    )
    # One route, taken by rule, planned by the (fake) LLM.
    graph = builder.compile(checkpointer=InMemorySaver())
    config = _config("t-wire")
    out = graph.invoke(
        {"messages": [("user", "wire 500 to DE89 3704")], "status": "running"}, config
    )
    assert out.get("__interrupt__"), out.get("outcome")  # the modeler wants a human
    assessment = graph.get_state(config).values["assessment"]
    assert assessment["class"] in ("irreversible", "unknown")
    lowered = {**assessment, "class": "safe"}
    graph.update_state(
        config, {"assessment": lowered, "pending_approval": None}, as_node="consequence"
    )
    out = graph.invoke(None, config)
    assert wired == [], wired
    record("assessed class lowered to safe", "custom graph / state", not wired, "nothing wired")
    swapped = {**lowered, "args": {"account": "XX00 0000", "amount_cents": 90000}}
    graph.update_state(config, {"assessment": swapped}, as_node="consequence")
    graph.invoke(None, config)
    assert wired == [], wired
    record("class safe, other arguments", "custom graph / state", not wired, "nothing wired")


def test_a_grant_for_one_order_does_not_pay_another(rt: AgentRuntime) -> None:
    thread_id, pending = _waiting(rt)
    before = _refunds() + len(support.store().refunds("A10234"))
    _accept_without_resuming(rt, thread_id, pending)
    forged = _forged_assessment(rt, thread_id, 2500)
    forged["args"] = {**forged["args"], "order_id": "A10234"}
    rt.graph.update_state(_config(thread_id), {"assessment": forged}, as_node="approval")
    rt.graph.invoke(None, _config(thread_id))
    paid = _refunds() + len(support.store().refunds("A10234")) - before
    record("grant for order 58812 used for A10234", "custom graph / state", paid == 0)
    assert paid == 0


def test_an_expired_approval_pays_nothing_and_is_asked_again(settings: Settings) -> None:
    """The approval lapses between the answer and the call: nothing runs, a new request
    (its own id) waits, and only an answer to that one pays, once."""
    brief = settings.model_copy(update={"approval_ttl_seconds": 0.001})
    llm = FakeListChatModel(responses=["Thanks, that is done."])
    with AgentRuntime.open("graphs/support.py", settings=brief, llm=llm) as short:
        thread_id, pending = _waiting(short)
        before = _refunds()
        answer = ApprovalAnswer(
            approval_id=pending["approval_id"],
            decision="approve",
            approver="sam",
            digest=pending["digest"],
        )
        res = short.answer(thread_id, answer)
        assert res.status == "waiting_approval" and res.pending_approval, res.outcome
        renewed = res.pending_approval
        assert renewed["approval_id"] != pending["approval_id"] and renewed["renewal"] == 1
        assert renewed["digest"] == pending["digest"]
        record("expired approval", "runtime / executor", _refunds() == before, "asked again")
        assert _refunds() == before
        rows = [(r.decision, r.reason or "") for r in short.ledger.approvals(thread_id=thread_id)]
        assert rows[-1][0] == "requested" and "expired" in rows[-1][1], rows
    with AgentRuntime.open("graphs/support.py", settings=settings, llm=llm) as normal:
        again = answer.model_copy(update={"approval_id": renewed["approval_id"]})
        assert normal.answer(thread_id, again).status == "done"
    assert _refunds() == before + 1


def test_an_edit_whose_approval_expired_is_asked_of_a_human_again(settings: Settings) -> None:
    """The edit's own grant lapses before the edited call begins: the gate must not keep
    granting it from the edit (a loop until LangGraph's step limit); a human is asked."""
    brief = settings.model_copy(update={"approval_ttl_seconds": 0.001})
    llm = FakeListChatModel(responses=["Thanks, that is done."])
    with AgentRuntime.open("graphs/support.py", settings=brief, llm=llm) as short:
        thread_id, pending = _waiting(short)
        before = _refunds()
        edit = ApprovalAnswer(
            approval_id=pending["approval_id"],
            decision="edit",
            approver="sam",
            digest=pending["digest"],
            args={**pending["args"], "amount_cents": 2000},
        )
        res = short.answer(thread_id, edit)
        assert res.status == "waiting_approval" and res.pending_approval, res.outcome
        # The edited call waits for a human (its own id), whether the gate saw the edit's
        # grant expired or the executor did.
        assert res.pending_approval["approval_id"] != pending["approval_id"]
        assert res.pending_approval["args"]["amount_cents"] == 2000
        rows = [r.decision for r in short.ledger.approvals(thread_id=thread_id)]
        ok = _refunds() == before and rows.count("approve") <= 1 and len(rows) < 8
        record("edit whose approval expired", "runtime / approval gate", ok, "asked again")
        assert ok, rows
