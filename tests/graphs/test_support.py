"""The reference support agent end to end: real MiniLM heads, real GGUF extraction, real
SQLite checkpoints and back office, real Valkey. The LLM role is a langchain-core fake
chat model here, and the local GGUF in test_support_local_llm.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from agentflow.errors import (
    ApprovalError,
    DigestMismatchError,
    StoreUnavailableError,
    UnknownApprovalError,
)
from agentflow.nodes.approval import ApprovalAnswer
from agentflow.runtime import AgentRuntime
from agentflow.settings import Settings
from graphs import support
from tests.fixtures.support_env import support_environment

LLM_TEXT = "Thanks for reaching out. Our Pro plan is $29 per month and includes priority support."


@pytest.fixture(scope="module")
def settings(
    tmp_path_factory: pytest.TempPathFactory, valkey_server: Any, heads_cache: Path
) -> Iterator[Settings]:
    with support_environment(
        tmp_path_factory.mktemp("support"), valkey_server.url, heads_cache
    ) as s:
        yield s


@pytest.fixture(scope="module")
def rt(settings: Settings) -> Iterator[AgentRuntime]:
    llm = FakeListChatModel(responses=[LLM_TEXT])
    with AgentRuntime.open("graphs/support.py", settings=settings, llm=llm) as runtime:
        yield runtime


def _roles(res: Any) -> list[tuple[str, str]]:
    return [(d["role"], d["source"]) for d in res.decisions]


def test_order_status_needs_no_llm(rt: AgentRuntime) -> None:
    res = rt.run("hey, where is my order A10234? still not here")
    assert res.route == "order_status" and res.status == "done"
    assert res.llm_calls == 0
    order = support.store().order("A10234")
    assert order is not None and order["tracking"] in (res.outcome or "")
    assert ("router", "slm:encoder") in _roles(res) and ("loop_evaluator", "slm:encoder") in _roles(
        res
    )


def test_change_address_updates_the_store_once(rt: AgentRuntime) -> None:
    db = support.store()
    with db._connect() as conn:  # an order that has not shipped yet
        oid = conn.execute(
            "SELECT order_id FROM orders WHERE status='processing' LIMIT 1"
        ).fetchone()[0]
    res = rt.run(f"Can you ship order {oid} to 7 Queen Street, York YO1 7HH instead please")
    assert res.route == "change_address", res.decisions
    assert res.status == "done", res.outcome
    assert db.order(oid)["address"].startswith("7 Queen Street")


def _order_with(status: str) -> dict[str, Any]:
    with support.store()._connect() as conn:
        oid = conn.execute(
            "SELECT order_id FROM orders WHERE status = ? ORDER BY order_id LIMIT 1", (status,)
        ).fetchone()[0]
    order = support.store().order(oid)
    assert order is not None
    return order


def test_incomplete_address_is_asked_for_and_the_reply_completes_it(rt: AgentRuntime) -> None:
    order = _order_with("processing")
    oid = order["order_id"]
    first = rt.run(f"Wrong apartment number on my order {oid}! It's 12C not 21C.")
    assert first.route == "change_address" and first.status == "done", first.decisions
    assert first.needs_input == ["address"] and first.llm_calls == 0
    assert order["address"] in (first.outcome or "")  # the question shows what is on file
    assert support.store().order(oid)["address"] == order["address"]  # nothing guessed

    reply = rt.run("Flat 12C, 40 Park Row, Leeds LS1 5HN", thread_id=first.thread_id)
    assert reply.route == "change_address" and reply.status == "done", reply.decisions
    assert reply.needs_input == [] and reply.llm_calls == 0
    assert support.store().order(oid)["address"] == "Flat 12C, 40 Park Row, Leeds LS1 5HN"


def test_back_office_refusal_is_answered_in_its_own_words(rt: AgentRuntime) -> None:
    order = _order_with("delivered")
    res = rt.run(f"Please send order {order['order_id']} to 9 Greenway Ct, Columbus GA 31904.")
    assert res.route == "change_address" and res.status == "done", res.decisions
    assert res.llm_calls == 0 and res.observations[-1]["status"] == "failed"
    assert "already delivered" in (res.outcome or "")
    assert support.store().order(order["order_id"])["address"] == order["address"]


def test_cancel_subscription_uses_schema_extraction(rt: AgentRuntime) -> None:
    res = rt.run("I'd like to cancel my subscription right now please, I don't use it anymore")
    assert res.route == "cancel_subscription", res.decisions
    assert any(d["role"] == "extractor" and d["source"] == "slm:gguf" for d in res.decisions)
    if res.status == "waiting_approval":
        # The modeler may raise a declared class (never lower it): the tool is declared
        # retry_safe, so a pending approval means the model judged the call more severe.
        assessment = res.pending_approval["assessment"]
        assert assessment["floor"] == "retry_safe" and assessment["class"] in (
            "irreversible",
            "unknown",
        )
        assert support.store().subscription("alex@example.com")["status"] == "active"
        p = res.pending_approval
        res = rt.answer(
            res.thread_id,
            ApprovalAnswer(
                approval_id=p["approval_id"], decision="approve", approver="sam", digest=p["digest"]
            ),
        )
    assert res.status == "done", res.outcome
    assert support.store().subscription("alex@example.com")["status"] == "cancelled"


def test_refund_waits_for_approval_then_runs_exactly_once(rt: AgentRuntime) -> None:
    db = support.store()
    before = len(db.refunds("58812"))
    res = rt.run("Order 58812 arrived damaged, I want a refund of $25")
    assert res.route == "refund" and res.status == "waiting_approval"
    pending = res.pending_approval
    assert pending and pending["tool"] == "issue_refund" and pending["args"]["amount_cents"] == 2500
    assert pending["assessment"]["class"] == "irreversible"
    assert len(db.refunds("58812")) == before  # nothing ran before the approval

    wrong = ApprovalAnswer(
        approval_id=pending["approval_id"], decision="approve", approver="eve", digest="0" * 64
    )
    with pytest.raises(DigestMismatchError):
        rt.answer(res.thread_id, wrong)
    assert rt.pending(res.thread_id) is not None and len(db.refunds("58812")) == before

    ok = wrong.model_copy(update={"digest": pending["digest"], "approver": "sam"})
    done = rt.answer(res.thread_id, ok)
    assert done.status == "done", done.outcome
    assert len(db.refunds("58812")) == before + 1
    with pytest.raises(UnknownApprovalError):  # a double approve finds nothing pending
        rt.answer(res.thread_id, ok)
    assert len(db.refunds("58812")) == before + 1


def test_rejected_refund_never_runs(rt: AgentRuntime) -> None:
    db = support.store()
    before = len(db.refunds())
    res = rt.run("Refund $10 for order A10234 please, it came late")
    assert res.status == "waiting_approval"
    p = res.pending_approval
    out = rt.answer(
        res.thread_id,
        ApprovalAnswer(
            approval_id=p["approval_id"],
            decision="reject",
            approver="sam",
            digest=p["digest"],
            message="policy",
        ),
    )
    assert out.status == "done" and "rejected" in (out.outcome or "")
    assert len(db.refunds()) == before


@pytest.mark.parametrize(
    "message,route",
    [
        ("How much is the Pro plan per month, and does it come with priority support?", "pricing"),
        (
            "This is ridiculous, third late delivery in a row. I want to speak to a manager NOW.",
            "complaint",
        ),
    ],
)
def test_llm_routes_call_the_llm_once(rt: AgentRuntime, message: str, route: str) -> None:
    res = rt.run(message)
    assert res.route == route and res.status == "done"
    assert res.llm_calls >= 1 and res.llm_tokens > 0
    assert res.outcome == LLM_TEXT


def test_decisions_reach_the_ledger(rt: AgentRuntime) -> None:
    res = rt.run("where's order A10235?")
    rows = rt.ledger.decisions(thread_id=res.thread_id)
    assert {r.role for r in rows} >= {"router", "loop_evaluator", "consequence_modeler"}
    assert len(rows) == len(res.decisions)


def test_pending_approvals_survive_a_new_runtime(settings: Settings, rt: AgentRuntime) -> None:
    res = rt.run("I want my money back for order A10235, $15 please")
    assert res.status == "waiting_approval"
    with AgentRuntime.open(
        "graphs/support.py", settings=settings, llm=FakeListChatModel(responses=[LLM_TEXT])
    ) as fresh:
        ids = {p.approval_id for p in fresh.pending_all()}
        assert res.pending_approval["approval_id"] in ids


def test_stale_approval_and_tool_changing_edit_are_refused(rt: AgentRuntime) -> None:
    db = support.store()
    first = rt.run("Refund $11 for order A10234, it arrived late")
    second = rt.run("Refund $12 for order A10234, still late", thread_id=first.thread_id + "-b")
    p1, p2 = first.pending_approval, second.pending_approval
    assert p1 and p2 and p1["approval_id"] != p2["approval_id"]
    before = len(db.refunds())
    stale = ApprovalAnswer(
        approval_id=p1["approval_id"], decision="approve", approver="sam", digest=p1["digest"]
    )
    with pytest.raises(UnknownApprovalError):  # an approval for another thread's action
        rt.answer(second.thread_id, stale)
    swap = ApprovalAnswer(
        approval_id=p2["approval_id"],
        decision="edit",
        approver="sam",
        digest=p2["digest"],
        tool="lookup_order",
        args={"order_id": "A10234"},
    )
    with pytest.raises(ApprovalError, match="not the tool"):
        rt.answer(second.thread_id, swap)
    assert len(db.refunds()) == before
    assert rt.pending(second.thread_id).approval_id == p2["approval_id"]  # still pending, unchanged
    edit = ApprovalAnswer(
        approval_id=p2["approval_id"],
        decision="edit",
        approver="sam",
        digest=p2["digest"],
        args={**p2["args"], "amount_cents": 500},
    )
    done = rt.answer(second.thread_id, edit)
    assert done.status == "done"
    assert [r["amount_cents"] for r in db.refunds()[before:]] == [500]  # the edited amount, once


def test_store_outage_fails_closed_and_the_thread_resumes(
    settings: Settings, valkey_factory: Any
) -> None:
    private = valkey_factory()
    s = settings.model_copy(update={"redis_url": private.url, "namespace": "outage"})
    with AgentRuntime.open(
        "graphs/support.py", settings=s, llm=FakeListChatModel(responses=[LLM_TEXT])
    ) as rt2:
        db = support.store()
        res = rt2.run("Refund $13 for order 58812, damaged box")
        p = res.pending_approval
        before = len(db.refunds("58812"))
        private.stop()
        answer = ApprovalAnswer(
            approval_id=p["approval_id"], decision="approve", approver="sam", digest=p["digest"]
        )
        # The approval cannot be recorded (its grant lives in the store): nothing is
        # accepted, nothing runs, and the thread still waits for the answer.
        with pytest.raises(StoreUnavailableError):
            rt2.answer(res.thread_id, answer)
        assert len(db.refunds("58812")) == before
        assert rt2.pending(res.thread_id) is not None
        private.start()
        done = rt2.answer(res.thread_id, answer)
        assert done.status == "done", done.outcome
        assert len(db.refunds("58812")) == before + 1
        assert rt2.retry(res.thread_id).status == "done"  # a second resume repeats nothing
        assert len(db.refunds("58812")) == before + 1
