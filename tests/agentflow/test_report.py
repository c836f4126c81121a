"""`agentflow report` over a real SQLite ledger holding a known day of traffic."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from agentflow.checkpoints.ledger import Ledger
from agentflow.cli import app
from agentflow.decision import Decision
from agentflow.recording import ApprovalRecord, LlmCallRecord, RunContext, ToolCallRecord
from agentflow.report import build_report

SINCE = datetime(2026, 3, 2, tzinfo=UTC)
UNTIL = datetime(2026, 3, 3, tzinfo=UTC)


class _Clock:
    def __init__(self) -> None:
        self.now = SINCE + timedelta(hours=9)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def _d(
    role: str, value: str, latency: float, source: str = "slm:encoder", escalated: bool = False
) -> Decision[str]:
    return Decision[str](role=role, value=value, confidence=0.9, source=source,  # type: ignore[arg-type]
                         latency_ms=latency, escalated=escalated, input="the same input")  # fmt: skip


def _ctx(thread: str, run: str = "r1", node: str = "router") -> RunContext:
    return RunContext(thread_id=thread, run_id=run, node=node)


def _call(tokens_in: int, tokens_out: int, latency: float) -> LlmCallRecord:
    return LlmCallRecord(purpose="respond", model="gpt-test", input_tokens=tokens_in, output_tokens=tokens_out,
                         latency_ms=latency, cost_estimate=(tokens_in + tokens_out) / 1000 * 0.5)  # fmt: skip


def _approval(approval_id: str, decision: str) -> ApprovalRecord:
    return ApprovalRecord(approval_id=approval_id, tool="issue_refund", digest="d" * 64, decision=decision,
                          approver=None if decision == "requested" else "dana")  # fmt: skip


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """One day of traffic between SINCE and UNTIL, plus records on both sides of it."""
    clock = _Clock()
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db", clock=clock)
    ledger.setup()
    clock.now = SINCE - timedelta(hours=2)  # before the period: must not count
    ledger.decision(_ctx("old"), _d("router", "pricing", 5.0))
    ledger.llm_call(_ctx("old"), _call(1000, 1000, 900.0))
    clock.now = SINCE + timedelta(hours=9)
    # A: two trusted small decisions and a tool call, no LLM.
    ledger.decision(_ctx("A"), _d("router", "order_status", 10.0))
    ledger.decision(_ctx("A", node="loop"), _d("loop_evaluator", "done", 12.0))
    ledger.tool_call(_ctx("A", node="act"), ToolCallRecord(tool="lookup_order", args={}, idempotency_key=None,
                                                           consequence="safe", outcome="ok"))  # fmt: skip
    # B: the router escalates; the LLM decides.
    ledger.decision(_ctx("B"), _d("router", "pricing", 11.0))
    ledger.decision(_ctx("B"), _d("router", "refund", 300.0, source="llm", escalated=True))
    ledger.llm_call(_ctx("B"), _call(100, 20, 300.0))
    # C: a trusted route, an LLM answer, a refund approved, the tool run on resumption (run r2).
    ledger.decision(_ctx("C"), _d("router", "refund", 9.0))
    ledger.llm_call(_ctx("C", node="respond"), _call(200, 50, 700.0))
    ledger.approval(_ctx("C", node="consequence"), _approval("apr-c", "requested"))
    ledger.approval(_ctx("C", run="r2", node="approval"), _approval("apr-c", "approve"))
    ledger.tool_call(_ctx("C", run="r2", node="act"), ToolCallRecord(
        tool="issue_refund", args={}, idempotency_key="k", consequence="irreversible", outcome="ok"))  # fmt: skip
    # D: an approval still pending after a refused answer; E: one answered after the period.
    ledger.decision(_ctx("D", node="consequence"), _d("consequence_modeler", "irreversible", 14.0))
    ledger.approval(_ctx("D", node="consequence"), _approval("apr-d", "requested"))
    ledger.approval(_ctx("D", node="approval"), _approval("apr-d", "refused"))
    ledger.approval(_ctx("E", node="consequence"), _approval("apr-e", "requested"))
    clock.now = UNTIL + timedelta(hours=3)
    ledger.approval(_ctx("E", run="r2", node="approval"), _approval("apr-e", "reject"))
    ledger.decision(_ctx("later"), _d("router", "pricing", 5.0))
    yield ledger
    ledger.close()


def test_report_sums_up_the_period(ledger: Ledger) -> None:
    rep = build_report(ledger, SINCE, UNTIL)
    assert (rep.requests, rep.runs) == (4, 5)  # A, B, C (runs r1 and r2), D
    assert rep.without_llm == 2 and rep.share_without_llm == 0.5
    assert (rep.decisions, rep.slm_decisions, rep.escalated_decisions) == (5, 4, 1)
    assert (rep.llm_calls, rep.llm_tokens) == (2, 370)
    assert rep.llm_cost == pytest.approx(0.185)
    # Four trusted small decisions, each replaced by an average LLM call (185 tokens).
    assert rep.all_llm_tokens == 370 + 4 * 185
    assert rep.all_llm_cost == pytest.approx(0.185 + 4 * 0.0925)
    assert rep.token_saving == round(1 - 370 / 1110, 4)
    # The router waited 10, 11 + 300 (escalated) and 9 ms.
    router = rep.latency["router"]
    assert router.n == 3
    assert router.p50_ms == pytest.approx(float(np.percentile([10, 311, 9], 50)))
    assert router.p95_ms == pytest.approx(float(np.percentile([10, 311, 9], 95)), abs=0.01)
    assert set(rep.latency) == {"router", "loop_evaluator", "consequence_modeler"}
    assert rep.llm_latency is not None and rep.llm_latency.n == 2
    a = rep.approvals
    assert (a.requested, a.answered, a.pending, a.refused) == (3, 2, 1, 1)
    assert a.answers == {"approve": 1, "reject": 1}


def test_report_on_an_empty_period_has_no_estimate(ledger: Ledger) -> None:
    rep = build_report(ledger, datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 2, tzinfo=UTC))
    assert rep.requests == 0 and rep.share_without_llm is None
    assert rep.all_llm_tokens is None and rep.token_saving is None and rep.latency == {}


def test_report_command(ledger: Ledger, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGENTFLOW_DATABASE_URL", f"sqlite:///{tmp_path}/ledger.db")
    args = ["report", "--since", "2026-03-02", "--until", "2026-03-03T00:00:00+00:00"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    assert data == build_report(ledger, SINCE, UNTIL).model_dump(mode="json")
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0, table.output
    assert "share_without_llm" in table.stdout and "latency router" in table.stdout
    bad = CliRunner().invoke(app, ["report", "--since", "last tuesday"])
    assert bad.exit_code == 1 and "--since" in bad.output
