"""`agentflow eval router` on real BANKING77 rows, through the real CLI entry point."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentflow.cli import app
from agentflow.heads import consequence_rows

BANKING = Path(__file__).resolve().parents[1] / "data" / "banking77_five_intents.csv"


def test_eval_router_reports_every_metric(tmp_path: Path) -> None:
    with BANKING.open() as fh:
        rows = [
            r
            for r in csv.DictReader(fh)
            if r["category"]
            in (
                "card_arrival",
                "exchange_rate",
                "pin_blocked",
                "top_up_failed",
                "lost_or_stolen_card",
            )
        ]
    # Make one label out-of-scope: it is absent from training and must fall below the threshold.
    train = [r for r in rows[::2] if r["category"] != "lost_or_stolen_card"]
    test = rows[1::2]
    for name, part in (("train", train), ("test", test)):
        with (tmp_path / f"{name}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["utterance", "intent"])
            w.writerows([(r["text"], r["category"]) for r in part])
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "router",
            "--train",
            str(tmp_path / "train.csv"),
            "--test",
            str(tmp_path / "test.csv"),
            "--text-col",
            "utterance",
            "--label-col",
            "intent",
            "--oos-label",
            "lost_or_stolen_card",
            "--latency-samples",
            "200",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n"] == len(test)
    assert report["accuracy"] >= 0.9
    assert 0 < report["coverage"] <= 1 and report["accuracy_on_covered"] >= report["accuracy"]
    # Out-of-scope rows are counted apart: they neither help nor hurt accuracy.
    assert report["n_in_scope"] == sum(r["category"] != "lost_or_stolen_card" for r in test)
    assert report["oos_escalation_rate"] is not None and 0.0 <= report["oos_escalation_rate"] <= 1.0
    assert 0 <= report["ece"] < 0.2
    assert report["p50_ms"] > 0 and report["p95_ms"] >= report["p50_ms"]
    assert report["latency_samples"] >= 200 and report["train_seconds"] > 0


def test_eval_router_holds_intents_out_whole_and_draws_the_curve(tmp_path: Path) -> None:
    with BANKING.open() as fh:
        rows = list(csv.DictReader(fh))
    train = tmp_path / "train.csv"
    with train.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "category"])
        w.writerows([(r["text"], r["category"]) for r in rows])
    args = ["eval", "router", "--train", str(train), "--json"]
    result = CliRunner().invoke(app, [*args, "--holdout-intents", "1", "--latency-samples", "200"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (held,) = report["held_out_intents"]
    # The held-out intent is in neither the training set nor the in-scope test rows.
    assert report["labels"] == len({r["category"] for r in rows}) - 1
    assert report["n_held_out"] == sum(r["category"] == held for r in rows)
    assert report["held_out_escalated"] >= report["held_out_escalated_confidence_only"]
    curve = report["curve"]
    assert [c["threshold"] for c in curve] == sorted(c["threshold"] for c in curve)
    # A higher threshold covers no more in-scope rows and escalates no fewer unseen ones.
    for low, high in itertools.pairwise(curve):
        assert high["coverage"] <= low["coverage"]
        assert high["held_out_escalated"] >= low["held_out_escalated"]
    too_many = CliRunner().invoke(app, [*args, "--holdout-intents", "99"])
    assert too_many.exit_code == 1 and "--holdout-intents between 1 and" in too_many.output


def test_eval_router_bad_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    result = CliRunner().invoke(app, ["eval", "router", "--train", str(bad), "--json"])
    assert result.exit_code == 1
    assert "lacks column" in result.output


@pytest.mark.parametrize(("role", "floor"), [("consequence", 0.6), ("loop", 0.55)])
def test_eval_on_held_out_groups_averages_splits(role: str, floor: float) -> None:
    result = CliRunner().invoke(app, ["eval", role, "--splits", "2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["splits"] == 2 and len(report["accuracy_by_split"]) == 2
    assert report["accuracy"] == pytest.approx(sum(report["accuracy_by_split"]) / 2, abs=1e-4)
    # Well above chance (five or four classes) on groups it never saw.
    assert report["accuracy"] >= floor
    assert report["accuracy_on_covered"] >= report["accuracy"] and 0 < report["coverage"] < 1


def test_eval_consequence_holds_whole_domains_out_and_counts_what_the_agent_would_do() -> None:
    result = CliRunner().invoke(
        app, ["eval", "consequence", "--held-out", "domain", "--splits", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = consequence_rows()
    assert report["held_out"] == "domain" and report["splits"] == 2
    by_domain = report["by_domain"]
    # Folds: every domain is held out exactly once, so every row is assessed once.
    assert set(by_domain) == {r["domain"] for r in rows}
    assert report["n_assessed"] == len(rows)
    assert sum(d["n_assessed"] for d in by_domain.values()) == len(rows)
    assert report["n_money"] == sum(bool(r.get("money")) for r in rows)
    assert report["n_reads"] == sum(r["label"] == "safe" for r in rows)
    shares = ("head_accuracy", "money_moving_stopped", "money_stopped_by_rule", "reads_safe")
    for figures in [report, *by_domain.values()]:
        assert all(figures[k] is None or 0 <= figures[k] <= 1 for k in shares), figures
        if figures["n_money"]:
            # what the rule holds at irreversible is stopped whatever the head says
            assert figures["money_stopped_by_rule"] <= figures["money_moving_stopped"]
    # the per-domain figures are the overall ones split up
    stopped = sum(
        d["money_moving_stopped"] * d["n_money"] for d in by_domain.values() if d["n_money"]
    )
    assert stopped / report["n_money"] == pytest.approx(report["money_moving_stopped"], abs=1e-3)
    safe = sum(d["reads_safe"] * d["n_reads"] for d in by_domain.values() if d["n_reads"])
    assert safe / report["n_reads"] == pytest.approx(report["reads_safe"], abs=1e-3)
    # pooled over both folds, the head's accuracy lies between the two folds' own
    folds = report["accuracy_by_split"]
    assert min(folds) - 1e-4 <= report["head_accuracy"] <= max(folds) + 1e-4


def test_eval_consequence_refuses_an_unknown_held_out_kind() -> None:
    result = CliRunner().invoke(app, ["eval", "consequence", "--held-out", "intent", "--json"])
    assert result.exit_code == 1 and "--held-out must be" in result.output
