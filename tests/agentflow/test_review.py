"""`agentflow review` on a real SQLite ledger, with drift measured by the real MiniLM head."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agentflow.checkpoints.ledger import Ledger
from agentflow.cli import app
from agentflow.cli.review_cmd import parse_when
from agentflow.decision import Decision, ModelRef
from agentflow.errors import DataError
from agentflow.recording import RunContext
from agentflow.review import interpret_answer, parse_label

DAY1 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY2 = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)

GRAPH_MODULE = '''"""A test graph: routes only."""
from agentflow.nodes.router import Route

EXAMPLES = {examples!r}


def routes():
    return [Route(name=n, description=n, examples=tuple(t)) for n, t in EXAMPLES.items()]
'''
EXAMPLES = {
    "order_status": ["where is my order", "has my package shipped yet", "tracking number for my order please",
                     "when will my parcel arrive", "my order hasn't arrived", "is my order on its way",
                     "can you check the status of my order", "which carrier is delivering my order"],
    "refund": ["I want my money back", "please refund my order", "can I get a refund for this charge",
               "I was charged twice, refund me", "how do I get reimbursed", "refund the amount to my card",
               "give me back my payment", "the charge was wrong, please refund it"],
    "pricing": ["how much is the Pro plan", "what does the Basic plan include", "do you offer discounts",
                "price of the team plan", "is there a student discount", "compare Plus and Pro plans",
                "what's the monthly cost", "how much does it cost per user"],
}  # fmt: skip
IN_DOMAIN = [("where's my parcel, it's been a week", "order_status"), ("has order A10234 shipped", "order_status"),
             ("I'd like my money returned", "refund"), ("how much is the plus plan per month", "pricing"),
             ("do students get a discount", "pricing"), ("can you track my package", "order_status")]  # fmt: skip
OFF_TOPIC = ["what's the weather in Paris tomorrow", "give me a recipe for banana bread",
             "who won the football match last night", "explain quantum entanglement simply"]  # fmt: skip


class _Clock:
    def __init__(self) -> None:
        self.now = DAY1

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def _small(text: str, value: str, confidence: float) -> Decision[str]:
    return Decision[str](role="router", value=value, confidence=confidence, source="slm:encoder",
                         model=ModelRef(name="router-head", sha256="ab" * 32), latency_ms=12.0, input=text)  # fmt: skip


def _verdict(text: str, value: str) -> Decision[str]:
    return Decision[str](role="router", value=value, confidence=1.0, source="llm", escalated=True,
                         model=ModelRef(name="gpt-test"), latency_ms=250.0, input=text)  # fmt: skip


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A ledger holding two days of router traffic, and the CLI pointed at it."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    graph = tmp_path / "review_graph.py"
    graph.write_text(GRAPH_MODULE.format(examples=EXAMPLES))
    monkeypatch.setenv("AGENTFLOW_DATA_DIR", str(tmp_path / "af"))
    monkeypatch.setenv("AGENTFLOW_DATABASE_URL", url)
    clock = _Clock()
    ledger = Ledger(url, clock=clock)
    ledger.setup()
    ids: dict[str, int] = {}
    for i, (text, value) in enumerate(IN_DOMAIN):
        ids[f"day1-{i}"] = ledger.record_decision(RunContext(thread_id=f"a{i}", run_id="r", node="router"),
                                                  _small(text, value, 0.93))  # fmt: skip
    # Two escalations: the LLM overrules one small decision and confirms the other.
    ctx = RunContext(thread_id="b", run_id="r", node="router")
    ids["overruled"] = ledger.record_decision(
        ctx, _small("I was billed for nothing", "pricing", 0.55)
    )
    ledger.record_decision(ctx, _verdict("I was billed for nothing", "refund"))
    ctx = RunContext(thread_id="c", run_id="r", node="router")
    ids["confirmed"] = ledger.record_decision(
        ctx, _small("delivery is late again", "order_status", 0.6)
    )
    ledger.record_decision(ctx, _verdict("delivery is late again", "order_status"))
    clock.now = DAY2
    for i, text in enumerate(OFF_TOPIC):
        ids[f"day2-{i}"] = ledger.record_decision(RunContext(thread_id=f"d{i}", run_id="r", node="router"),
                                                  _small(text, "pricing", 0.7))  # fmt: skip
    yield {"ledger": ledger, "ids": ids, "graph": str(graph)}
    ledger.close()


def _review(env: dict[str, Any], *args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(app, ["review", "--graph", env["graph"], *args], input=input)


def test_review_reports_accuracy_escalation_and_drift(env: dict[str, Any]) -> None:
    ids = env["ids"]
    result = _review(env, "--json", "--by", "dana", "--label", f"{ids['day1-0']}=order_status",
                     "--label", f"{ids['overruled']}=refund", "--label", f"{ids['day1-3']}=refund")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    router = report["roles"]["router"]
    assert router["n"] == len(IN_DOMAIN) + 2 + len(OFF_TOPIC)
    assert router["escalated"] == 2
    assert router["escalation_rate"] == round(2 / router["n"], 4)
    # day1-0 right; overruled: the small model was wrong, the LLM right; day1-3 wrong.
    assert router["n_labelled"] == 3
    assert router["accuracy"] == round(1 / 3, 4)
    assert router["outcome_accuracy"] == round(2 / 3, 4)
    assert router["llm_agreement"] == 0.5
    drift = {b["start"]: b for b in router["drift"]}
    assert drift["2026-03-02"]["n"] == len(IN_DOMAIN) + 2 and drift["2026-03-03"]["n"] == len(
        OFF_TOPIC
    )
    # Off-topic traffic on day 2 is far from every route's examples; day 1 was on topic.
    assert drift["2026-03-03"]["share"] == 1.0
    assert drift["2026-03-02"]["share"] < drift["2026-03-03"]["share"]
    labels = {lbl.decision_id: lbl for lbl in env["ledger"].labels(role="router")}
    assert (
        labels[ids["overruled"]].value == "refund" and labels[ids["overruled"]].labeled_by == "dana"
    )
    assert sorted(report["labelled"]) == sorted([ids["day1-0"], ids["overruled"], ids["day1-3"]])
    listed = {d["id"]: d for d in report["decisions"]}
    assert listed[ids["overruled"]]["outcome"] == "refund" and listed[ids["overruled"]]["escalated"]
    assert listed[ids["overruled"]]["human_label"] == "refund"


def test_period_and_role_filters(env: dict[str, Any]) -> None:
    result = _review(env, "--json", "--no-drift", "--since", "2026-03-03", "--role", "router")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["roles"]["router"]["n"] == len(OFF_TOPIC)
    assert report["roles"]["router"]["drift"] is None
    result = _review(env, "--json", "--no-drift", "--role", "loop_evaluator")
    assert json.loads(result.stdout)["roles"] == {}


def test_labels_are_checked_before_any_is_written(env: dict[str, Any]) -> None:
    ids = env["ids"]
    result = _review(
        env,
        "--json",
        "--label",
        f"{ids['day1-0']}=refund",
        "--label",
        f"{ids['day1-1']}=no_such_route",
    )
    assert result.exit_code == 1
    assert "not a value the router can take" in result.output and "order_status" in result.output
    assert env["ledger"].labels() == []
    result = _review(env, "--json", "--label", "999999=refund")
    assert result.exit_code == 1 and "no decision 999999" in result.output
    result = _review(env, "--json", "--label", "refund")
    assert result.exit_code == 1 and "ID=VALUE" in result.output


def test_interactive_labelling_of_a_sample(env: dict[str, Any]) -> None:
    listed = _review(env, "--json", "--no-drift", "--sample", "3", "--seed", "7")
    sample = [d for d in json.loads(listed.stdout)["decisions"]]
    assert len(sample) == 3 and env["ledger"].labels() == []  # --json lists, never prompts
    # Enter keeps the first, a typo is refused and asked again, s skips the third.
    result = _review(env, "--no-drift", "--sample", "3", "--seed", "7", "--by", "sam",
                     input="\nbogus\nrefund\ns\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "not a value the router can take" in result.output
    labels = {lbl.decision_id: lbl.value for lbl in env["ledger"].labels()}
    assert labels == {sample[0]["id"]: sample[0]["value"], sample[1]["id"]: "refund"}
    # Labelled decisions are not sampled again; end of input stops without error.
    again = _review(env, "--no-drift", "--sample", "2", "--seed", "7", input="")
    assert again.exit_code == 0, again.output
    assert len(env["ledger"].labels()) == 2


def test_episodes_pair_each_verdict_with_the_decision_it_overrode(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path}/l.db")
    ledger.setup()
    a, b = RunContext(thread_id="a", run_id="r"), RunContext(thread_id="b", run_id="r")
    small_a = ledger.record_decision(a, _small("x", "pricing", 0.5))
    small_b = ledger.record_decision(b, _small("y", "pricing", 0.5))
    verdict_b = ledger.record_decision(b, _verdict("y", "refund"))  # interleaved threads
    verdict_a = ledger.record_decision(a, _verdict("x", "order_status"))
    alone = ledger.record_decision(a, _verdict("z", "refund"))  # no small model before it
    episodes = {ep.id: ep for ep in ledger.episodes()}
    assert set(episodes) == {small_a, small_b, alone}
    assert episodes[small_a].final.id == verdict_a and episodes[small_b].final.id == verdict_b
    assert episodes[small_a].verdict is not None and episodes[alone].verdict is None
    assert episodes[alone].escalated
    ledger.close()


def test_parsing_of_times_labels_and_answers() -> None:
    assert parse_when("2026-03-02", "--since") == datetime(2026, 3, 2, tzinfo=UTC)
    assert parse_when("2026-03-02T10:00+01:00", "--since") == datetime(2026, 3, 2, 9, tzinfo=UTC)
    recent = parse_when("12h", "--since")
    assert recent is not None and abs(
        (datetime.now(UTC) - recent) - timedelta(hours=12)
    ) < timedelta(minutes=1)
    with pytest.raises(DataError, match="--until"):
        parse_when("yesterday", "--until")
    assert parse_label("12=refund") == (12, "refund")
    assert parse_label('12={"plan": "Pro"}') == (12, {"plan": "Pro"})
    with pytest.raises(DataError, match="looks like JSON"):
        parse_label("12={oops")
    assert interpret_answer('"s"', None)[1] == "s"  # type: ignore[arg-type]
    assert interpret_answer("Q", None)[0] == "quit"  # type: ignore[arg-type]
