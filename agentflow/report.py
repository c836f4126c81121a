"""Sum up a period of traffic from the ledger: what SLM-first saved, and how fast it was.

A *request* is a thread (a conversation / one durable run, however often it was
resumed); a *run* is one invocation or resumption. A request is handled without the
LLM when no LLM call was recorded for its thread in the period.

The all-LLM estimate replaces every decision a small model took (and was trusted on)
by one LLM call of the average size observed in the period: ``all_llm_tokens =
llm_tokens + slm_decisions * (llm_tokens / llm_calls)``, and the same for cost. It
assumes an LLM-only agent would make one call per control-flow decision and that its
calls look like the ones recorded (planning, escalation and answers together); with no
LLM call in the period there is nothing to average, and the estimate is None.

Approvals: a request is counted from its ``requested`` record; it is answered once an
approve / reject / edit / respond answer is recorded, and pending until then.
Refused answers (wrong digest, unknown approval) are counted apart.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime

from pydantic import BaseModel, Field

from agentflow.checkpoints.ledger import Ledger
from agentflow.evaluation import percentiles

__all__ = ["ApprovalStats", "LatencyStats", "Report", "build_report"]

_ANSWERS = ("approve", "reject", "edit", "respond")


class LatencyStats(BaseModel):
    """Latency of one kind of step."""

    n: int
    """Samples."""
    p50_ms: float
    """Median."""
    p95_ms: float
    """95th percentile."""


class ApprovalStats(BaseModel):
    """Human approvals over the period."""

    requested: int = 0
    """Approval requests recorded."""
    answered: int = 0
    """Of those, answered (approve, reject, edit or respond)."""
    pending: int = 0
    """Of those, still waiting for a person."""
    answers: dict[str, int] = Field(default_factory=dict)
    """Answers by decision."""
    refused: int = 0
    """Answers refused (wrong digest, unknown approval, invalid payload)."""


class Report(BaseModel):
    """What ``agentflow report`` prints."""

    since: datetime | None
    """Start of the period (inclusive)."""
    until: datetime | None
    """End of the period (exclusive)."""
    requests: int
    """Distinct threads."""
    runs: int
    """Distinct thread runs (a resumption is a run)."""
    without_llm: int
    """Requests with no LLM call."""
    share_without_llm: float | None
    """``without_llm / requests``."""
    decisions: int
    """Decisions (episodes) taken, all roles."""
    slm_decisions: int
    """Of those, taken by a small model and trusted (no LLM)."""
    escalated_decisions: int
    """Of those, acted on through the LLM or a safe default."""
    llm_calls: int
    """LLM calls recorded."""
    llm_tokens: int
    """Their prompt plus completion tokens."""
    llm_cost: float
    """Their estimated cost."""
    all_llm_tokens: int | None
    """Estimated tokens had every small decision been an LLM call (see module doc)."""
    all_llm_cost: float | None
    """Estimated cost of the same."""
    token_saving: float | None
    """``1 - llm_tokens / all_llm_tokens``."""
    latency: dict[str, LatencyStats]
    """p50/p95 per role of a decision as the graph waited for it (small model + LLM if escalated)."""
    llm_latency: LatencyStats | None
    """p50/p95 of LLM calls."""
    approvals: ApprovalStats
    """Approvals requested, answered and pending."""
    estimate: str = (
        "all-LLM = recorded LLM tokens + one average-sized LLM call per trusted small-model "
        "decision"
    )
    """How the all-LLM numbers were estimated."""


def _latency(samples: list[float]) -> LatencyStats:
    return LatencyStats(n=len(samples), **percentiles(samples))


def _approvals(ledger: Ledger, since: datetime | None, until: datetime | None) -> ApprovalStats:
    rows = ledger.approvals(since=since, until=until)
    requested = {r.approval_id for r in rows if r.decision == "requested"}
    # An answer given after the period still closes a request made in it.
    first_answer: dict[str, str] = {}
    for r in ledger.approvals(since=since):
        if r.approval_id in requested and r.decision in _ANSWERS:
            first_answer.setdefault(r.approval_id, r.decision)
    return ApprovalStats(
        requested=len(requested),
        answered=len(first_answer),
        pending=len(requested - set(first_answer)),
        answers=dict(Counter(first_answer.values())),
        refused=sum(r.decision == "refused" for r in rows),
    )


def build_report(
    ledger: Ledger, since: datetime | None = None, until: datetime | None = None
) -> Report:
    """Sum up ``[since, until)`` from the ledger."""
    episodes = ledger.episodes(since=since, until=until)
    calls = ledger.llm_calls(since=since, until=until)
    tools = ledger.tool_calls(since=since, until=until)
    runs: set[tuple[str, str]] = set()
    for rec in [*(ep.first for ep in episodes), *calls, *tools]:
        runs.add((rec.thread_id, rec.run_id))
    threads = {thread for thread, _ in runs}
    with_llm = {c.thread_id for c in calls}
    slm = sum(not ep.escalated and ep.first.source.startswith("slm:") for ep in episodes)
    tokens = sum(c.input_tokens + c.output_tokens for c in calls)
    cost = sum(c.cost_estimate for c in calls)
    all_tokens = all_cost = saving = None
    if calls:
        all_tokens = round(tokens + slm * tokens / len(calls))
        all_cost = round(cost + slm * cost / len(calls), 6)
        saving = round(1 - tokens / all_tokens, 4) if all_tokens else None
    by_role: dict[str, list[float]] = defaultdict(list)
    for ep in episodes:  # what the graph waited for: the small model, plus the LLM if escalated
        extra = ep.final.latency_ms if ep.final.id != ep.first.id else 0.0
        by_role[ep.first.role].append(ep.first.latency_ms + extra)
    without = len(threads - with_llm)
    return Report(
        since=since,
        until=until,
        requests=len(threads),
        runs=len(runs),
        without_llm=without,
        share_without_llm=round(without / len(threads), 4) if threads else None,
        decisions=len(episodes),
        slm_decisions=slm,
        escalated_decisions=sum(ep.escalated for ep in episodes),
        llm_calls=len(calls),
        llm_tokens=tokens,
        llm_cost=round(cost, 6),
        all_llm_tokens=all_tokens,
        all_llm_cost=all_cost,
        token_saving=saving,
        latency={role: _latency(v) for role, v in sorted(by_role.items())},
        llm_latency=_latency([c.latency_ms for c in calls]) if calls else None,
        approvals=_approvals(ledger, since, until),
    )
