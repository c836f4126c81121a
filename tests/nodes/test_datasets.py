"""Checks on the shipped labelled data sets: they parse, labels and sizes are right, nothing leaks.

The files are what the router, loop evaluator and consequence modeler are trained on and
what the workload benchmark reports, so a broken row, a skewed mix or a workload message
that also sits in the training set would silently inflate or corrupt those numbers.
No models are loaded here; the whole module runs in well under a second.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from agentflow.consequence import (
    CONSEQUENCE_CLASSES,
    ToolAnnotations,
    apply_floor,
    floor_from_annotations,
)
from agentflow.money import money_signals

ROOT = Path(__file__).resolve().parents[2]
NODES_DATA = ROOT / "nodes" / "data"
GRAPHS_DATA = ROOT / "graphs" / "data"

ROUTES = (
    "order_status",
    "change_address",
    "cancel_subscription",
    "refund",
    "pricing",
    "complaint",
)
# The workload mix documented in graphs/data/README.md (share of messages per route).
WORKLOAD_MIX = {
    "order_status": 0.38,
    "change_address": 0.14,
    "cancel_subscription": 0.14,
    "refund": 0.12,
    "pricing": 0.11,
    "complaint": 0.11,
}
# The class balance documented in nodes/data/README.md.
CONSEQUENCE_MIX = {
    "safe": 0.30,
    "retry_safe": 0.22,
    "retry_unsafe": 0.18,
    "irreversible": 0.22,
    "unknown": 0.10,
}
LOOP_LABELS = ("continue", "replan", "done", "escalate")
REFERENCE_AGENT_TOOLS = {
    "lookup_order",
    "update_shipping_address",
    "cancel_subscription",
    "issue_refund",
    "search_docs",
}
PLANS = {"Basic", "Plus", "Pro", "Team"}

# Jaccard over words + word bigrams of the normalised text. Real, independently written
# messages stay far below these; templated variants ("refund order 1", "... order 2")
# normalise to the same text and score 1.0.
NEAR_DUPLICATE = 0.8
CROSS_SET_OVERLAP = 0.5


@cache
def _rows(path: Path) -> tuple[dict[str, Any], ...]:
    with path.open(encoding="utf-8") as fh:
        return tuple(json.loads(line) for line in fh if line.strip())


def _normalise(text: str) -> str:
    # digits are folded so that rows differing only by an id or amount count as one
    text = re.sub(r"\d", "0", text.lower())
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def _features(text: str) -> frozenset[str]:
    words = _normalise(text).split()
    return frozenset(words) | {f"{a} {b}" for a, b in itertools.pairwise(words)}


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def _near_duplicates(
    texts: list[str], others: list[str] | None, threshold: float
) -> list[tuple[str, str]]:
    """Pairs scoring at or above threshold, within ``texts`` or across to ``others``."""
    left = [_features(t) for t in texts]
    pairs: Iterable[tuple[int, int]]
    if others is None:
        pairs = itertools.combinations(range(len(texts)), 2)
        right, right_texts = left, texts
    else:
        right, right_texts = [_features(t) for t in others], others
        pairs = itertools.product(range(len(texts)), range(len(others)))
    return [
        (texts[i], right_texts[j]) for i, j in pairs if _jaccard(left[i], right[j]) >= threshold
    ]


def _consequence() -> tuple[dict[str, Any], ...]:
    return _rows(NODES_DATA / "consequence_tools.jsonl")


def _loops() -> tuple[dict[str, Any], ...]:
    return _rows(NODES_DATA / "loop_examples.jsonl")


def _routes() -> tuple[dict[str, Any], ...]:
    return _rows(GRAPHS_DATA / "support_routes.jsonl")


def _workload() -> tuple[dict[str, Any], ...]:
    return _rows(GRAPHS_DATA / "support_workload.jsonl")


def _docs() -> tuple[dict[str, Any], ...]:
    return _rows(GRAPHS_DATA / "support_docs.jsonl")


# ------------------------------------------------------------------ consequence modeler


def test_consequence_rows_are_well_formed_tool_calls() -> None:
    for row in _consequence():
        assert set(row) - {"money"} == {"id", "domain", "tool", "args", "label", "rationale"}
        assert row.get("money", True) is True, f"{row['id']}: money is marked true or left out"
        tool, args = row["tool"], row["args"]
        assert row["label"] in CONSEQUENCE_CLASSES, row["id"]
        assert set(tool) <= {"name", "description", "inputSchema", "annotations"}, row["id"]
        assert re.fullmatch(r"[a-z][a-z0-9_]*", tool["name"]), row["id"]
        assert tool["description"].strip(), row["id"]
        schema = tool["inputSchema"]
        assert schema["type"] == "object", row["id"]
        properties = schema["properties"]
        assert set(schema.get("required", [])) <= set(properties), row["id"]
        assert set(args) <= set(properties), f"{row['id']}: argument not in the schema"
        assert set(schema.get("required", [])) <= set(args), f"{row['id']}: required arg missing"
        assert 0 < len(row["rationale"]) <= 200, row["id"]


def test_consequence_size_domains_and_class_balance() -> None:
    rows = _consequence()
    assert len(rows) >= 900
    per_domain = Counter(r["domain"] for r in rows)
    assert len(per_domain) >= 35, per_domain
    assert min(per_domain.values()) >= 15, per_domain
    shares = Counter(r["label"] for r in rows)
    for label, target in CONSEQUENCE_MIX.items():
        assert abs(shares[label] / len(rows) - target) <= 0.04, (label, shares)


def test_consequence_ids_and_calls_are_unique() -> None:
    rows = _consequence()
    assert len({r["id"] for r in rows}) == len(rows)
    calls = Counter((r["tool"]["name"], json.dumps(r["args"], sort_keys=True)) for r in rows)
    assert [c for c, n in calls.items() if n > 1] == []
    # one name, one definition: otherwise the same tool would teach two different things
    definitions: dict[str, dict[str, Any]] = {}
    for r in rows:
        assert definitions.setdefault(r["tool"]["name"], r["tool"]) == r["tool"], r["id"]


def test_consequence_annotations_are_a_floor_the_label_respects() -> None:
    rows = _consequence()
    annotated = [r for r in rows if "annotations" in r["tool"]]
    assert 0.35 <= len(annotated) / len(rows) <= 0.65
    for row in annotated:
        hints = ToolAnnotations.model_validate(row["tool"]["annotations"])
        assert hints.declared(), row["id"]
        floor = floor_from_annotations(hints)
        assert apply_floor(floor, row["label"]) == row["label"], row["id"]
        if hints.read_only:
            assert row["label"] == "safe", f"{row['id']}: readOnlyHint on a write"


def test_consequence_set_excludes_the_reference_agent_tools() -> None:
    names = {r["tool"]["name"] for r in _consequence()}
    assert names.isdisjoint(REFERENCE_AGENT_TOOLS)


def test_consequence_covers_the_documented_hard_cases() -> None:
    rows = _consequence()
    dry_runs = {r["args"].get("dry_run") for r in rows if "dry_run" in r["args"]}
    assert dry_runs == {True, False}
    for r in rows:
        if r["args"].get("dry_run") is True or r["args"].get("preview") is True:
            assert r["label"] == "safe", r["id"]
    assert sum("annotations" not in r["tool"] and r["label"] == "irreversible" for r in rows) >= 10


def test_consequence_money_rows_are_irreversible_across_many_domains() -> None:
    # "money": the call charges, refunds, pays, books, issues credit or a voucher,
    # transfers funds or cancels a booking; eval consequence counts how many are stopped.
    money = [r for r in _consequence() if r.get("money")]
    assert [r["id"] for r in money if r["label"] != "irreversible"] == []
    assert len(money) >= 100
    assert len({r["domain"] for r in money}) >= 25
    # Many of them do not say money in the name, nor declare anything.
    assert sum("annotations" not in r["tool"] for r in money) >= 0.6 * len(money)


def test_the_money_rule_never_contradicts_a_hand_label() -> None:
    # The rule raises to irreversible; a row it fires on but labelled below that would
    # be a write the labeller judged routine, and the rule an over-reach (or the label
    # wrong). Reads it never touches: a reading verb keeps it silent.
    for row in _consequence():
        signals = money_signals(row["tool"], row["args"])
        if signals.moves_money():
            assert row["label"] in ("irreversible", "unknown"), (row["id"], signals.reasons)


def test_reads_that_mention_money_are_in_the_set_and_labelled_safe() -> None:
    money_words = re.compile(r"refund|payment|payout|charge|fare|price|invoice|balance|fee")
    reads = [
        r
        for r in _consequence()
        if r["label"] == "safe" and money_words.search(r["tool"]["name"] + r["tool"]["description"])
    ]
    assert len(reads) >= 60
    assert all(not money_signals(r["tool"], r["args"]).moves_money() for r in reads)


# ------------------------------------------------------------------ loop evaluator


def test_loop_rows_are_well_formed() -> None:
    for i, row in enumerate(_loops()):
        assert set(row) == {"goal", "step", "observation", "steps_done", "steps_planned", "label"}
        assert row["label"] in LOOP_LABELS, i
        assert all(row[k].strip() for k in ("goal", "step", "observation")), i
        assert isinstance(row["steps_done"], int) and isinstance(row["steps_planned"], int), i
        assert row["steps_planned"] >= 1 and row["steps_done"] >= 0, i
        if row["label"] == "continue":
            assert row["steps_done"] < row["steps_planned"], f"row {i}: continue with no step left"


def test_loop_size_balance_and_variety() -> None:
    rows = _loops()
    assert len(rows) >= 1000
    shares = Counter(r["label"] for r in rows)
    # Whole runs are labelled at every step, so continue leads as it does in real runs;
    # every other label keeps enough rows to be learned.
    for label in LOOP_LABELS:
        assert 0.08 <= shares[label] / len(rows) <= 0.70, shares
    assert shares["continue"] == max(shares.values()), shares
    assert len({r["goal"] for r in rows}) >= 200
    assert any(r["label"] == "done" and r["steps_done"] < r["steps_planned"] for r in rows)


def test_loop_rows_are_unique_and_never_contradict() -> None:
    labels: dict[tuple[str, ...], set[str]] = {}
    for r in _loops():
        # digits are kept here: "[]" versus three free slots is the whole difference
        key = tuple(" ".join(r[k].lower().split()) for k in ("goal", "step", "observation"))
        labels.setdefault(key, set()).add(r["label"])
    rows = _loops()
    assert len(labels) == len(rows), "duplicate (goal, step, observation)"
    assert all(len(v) == 1 for v in labels.values())


# ------------------------------------------------------------------ support agent


def test_router_training_set_has_ninety_varied_examples_per_route() -> None:
    rows = _routes()
    assert all(set(r) == {"text", "label"} and r["text"].strip() for r in rows)
    per_route = Counter(r["label"] for r in rows)
    assert set(per_route) == set(ROUTES) and min(per_route.values()) >= 90, per_route
    texts = [r["text"] for r in rows]
    assert len({_normalise(t) for t in texts}) == len(texts)
    assert _near_duplicates(texts, None, NEAR_DUPLICATE) == []


def test_workload_rows_size_and_fields() -> None:
    rows = _workload()
    assert len(rows) >= 250
    assert len({r["id"] for r in rows}) == len(rows)
    allowed = {"id", "text", "expected_route", "order_id", "amount", "email", "plan", "hard"}
    for r in rows:
        assert set(r) <= allowed and r["text"].strip(), r["id"]
        assert r["expected_route"] in ROUTES, r["id"]
        if "order_id" in r:
            assert re.fullmatch(r"A\d{5}|\d{5}", r["order_id"]) and r["order_id"] in r["text"]
        if "email" in r:
            assert r["email"] in r["text"], r["id"]
        if "plan" in r:
            assert r["plan"] in PLANS and r["plan"].lower() in r["text"].lower(), r["id"]
        if "amount" in r:
            assert isinstance(r["amount"], float) and r["amount"] > 0, r["id"]
        assert r.get("hard", True) is True, r["id"]


def test_workload_mix_matches_the_documented_mix() -> None:
    rows = _workload()
    counts = Counter(r["expected_route"] for r in rows)
    for route, share in WORKLOAD_MIX.items():
        assert abs(counts[route] / len(rows) - share) <= 0.02, (route, counts)
    hard = sum(bool(r.get("hard")) for r in rows) / len(rows)
    assert 0.08 <= hard <= 0.15, hard


def test_workload_has_no_duplicates_and_no_overlap_with_training() -> None:
    work = [r["text"] for r in _workload()]
    train = [r["text"] for r in _routes()]
    assert len({_normalise(t) for t in work}) == len(work)
    assert _near_duplicates(work, None, NEAR_DUPLICATE) == []
    assert {_normalise(t) for t in work}.isdisjoint({_normalise(t) for t in train})
    assert _near_duplicates(work, train, CROSS_SET_OVERLAP) == []


def test_support_docs_are_short_unique_and_cover_every_plan() -> None:
    docs = _docs()
    assert 10 <= len(docs) <= 15
    assert len({d["id"] for d in docs}) == len(docs)
    for d in docs:
        assert set(d) == {"id", "title", "text"} and d["title"].strip(), d["id"]
        assert 30 <= len(d["text"].split()) <= 150, d["id"]
    corpus = " ".join(d["text"] for d in docs)
    assert all(plan in corpus for plan in PLANS)


@pytest.mark.parametrize(
    ("text", "other"),
    [
        ("I want a refund for order A10001", "I want a refund for order A10002!"),
        ("Where is my order #58812?", "where is my order #58813"),
    ],
)
def test_near_duplicate_check_catches_templated_variants(text: str, other: str) -> None:
    # guards the guard: the checks above would pass vacuously if this never fired
    assert _near_duplicates([text], [other], NEAR_DUPLICATE) == [(text, other)]
