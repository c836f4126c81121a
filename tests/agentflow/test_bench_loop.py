"""`agentflow bench loop` on the shipped recorded runs, with the real MiniLM heads and no
LLM: the report's figures add up (the figures themselves are measurements, never asserted
against a target), and a malformed trajectories file is refused with its line number."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agentflow.benchmarks import loop
from agentflow.benchmarks.trajectories import load_trajectories, observation_failed
from agentflow.cli import app
from agentflow.errors import DataError
from agentflow.heads import _data
from agentflow.settings import Settings
from tests.fixtures.heads import data_dir_with_heads

SHIPPED = Path(loop.__file__).parent / "data" / "loop_trajectories.jsonl"


@pytest.fixture
def settings(tmp_path: Path, heads_cache: Path) -> Settings:
    # No database: the consequence head is the shipped examples' head, as on a fresh install.
    return Settings(
        data_dir=data_dir_with_heads(tmp_path / "af", heads_cache),
        database_url=f"sqlite:///{tmp_path}/absent.db",
    )


def test_the_shipped_runs_are_long_varied_and_held_out() -> None:
    runs = load_trajectories()
    assert len(runs) >= 100
    assert len({r.id for r in runs}) == len(runs)
    assert all(5 <= len(r.steps) <= 20 for r in runs)
    assert sum(len(r.steps) >= 10 for r in runs) >= 0.4 * len(runs)
    assert 0.75 <= sum(r.final == "done" for r in runs) / len(runs) <= 0.85
    assert len({r.domain for r in runs}) >= 12
    steps = [s for r in runs for s in r.steps]
    assert sum(s.definition is not None for s in steps) >= 0.7 * len(steps)
    # Held out from the loop head: no goal or observation of its training rows recurs here.
    trained = _data("loop_examples.jsonl")
    assert not {r.goal for r in runs} & {str(t["goal"]) for t in trained}
    seen = {str(t["observation"]) for t in trained}
    texts = [
        s.observation if isinstance(s.observation, str) else json.dumps(s.observation)
        for s in steps
    ]
    assert not seen.intersection(texts)


@pytest.mark.parametrize(
    "observation,failed",
    [
        ('404 Not Found: {"error": "order_not_found"}', True),
        ("HTTP/1.1 503 Service Unavailable", True),
        ({"error": {"code": "chargeback_open"}}, True),
        ({"type": "about:blank", "title": "Conflict", "status": 409}, True),
        ({"status": "rejected", "reason": "missing_ean"}, False),
        ({"updated": 10, "failed": 2, "errors": [{"sku": "GF-1"}]}, False),
        ({"error": None, "id": "x"}, False),
        ([], False),
        ("200 rows exported", False),
    ],
)
def test_what_counts_as_a_failed_step(observation: Any, failed: bool) -> None:
    assert observation_failed(observation) is failed


@pytest.mark.slow
def test_the_replay_report_holds_together(settings: Settings, tmp_path: Path) -> None:
    # Every fourth shipped run (30, of all lengths and domains): the whole file embeds
    # ~2,300 texts, minutes on a 2-core machine; `agentflow bench loop` measures it all.
    some = _write(tmp_path / "some.jsonl", SHIPPED.read_text(encoding="utf-8").splitlines()[::4])
    runs = load_trajectories(some)
    report = loop.run(some, settings=settings)
    steps = sum(len(r.steps) for r in runs)
    assert report["trajectories"] == len(runs) and report["steps"] == steps
    assert sum(n * k for n, k in report["steps_by_length"].items()) == steps
    assert sum(report["verdicts"].values()) == steps
    assert sum(report["plan_unknown"]["verdicts"].values()) == steps
    by_role = report["llm_calls_by_role"]
    assert report["llm_calls"] == by_role["loop_evaluator"] + by_role["consequence_modeler"]
    assert report["llm_calls"] <= report["escalations"]["total"]
    assert report["verdicts"].get("llm", 0) == by_role["loop_evaluator"]
    assert report["llm_calls_per_10_steps"] == round(10 * report["llm_calls"] / steps, 3)
    assert report["escalations"]["total"] == sum(
        report["escalations"][role] for role in ("loop_evaluator", "consequence_modeler")
    )
    assessed = sum(s.definition is not None for r in runs for s in r.steps)
    assert sum(report["consequence_classes"].values()) == assessed
    assert (
        report["consequence_classes"].get("llm", 0) == report["escalations"]["consequence_modeler"]
    )
    for key in (
        "premature_done",
        "premature_done_plan_unknown",
        "missed_done",
        "premature_escalate",
    ):
        assert 0.0 <= report[key] <= 1.0, key
    assert report["premature_done"] == round(len(report["premature_done_at"]) / len(runs), 4)
    for stop in report["premature_done_at"]:
        assert stop["step"] < stop["of"]
    done_runs = sum(r.final == "done" for r in runs)
    missed = sum(report["missed_done_by_last_verdict"].values())
    assert report["missed_done"] == round(missed / done_runs, 4)
    assert report["premature_escalate"] == round(
        len(report["premature_escalate_at"]) / done_runs, 4
    )
    escalate = report["escalate_runs"]
    assert escalate["runs"] == len(runs) - done_runs
    for key in ("escalated_by_last_step", "escalated_at_last_step", "llm_at_last_step"):
        assert 0.0 <= escalate[key] <= 1.0, key
    assert escalate["escalated_at_last_step"] <= escalate["escalated_by_last_step"]
    finals = {r.id: r.final for r in runs}
    assert {finals[i] for i in escalate["said_done"]} <= {"escalate"}
    guards = report["default_guards"]
    assert guards["done_runs_stopped"] <= guards["runs_stopped"] <= len(runs)
    assert report["meets_target"] == (
        report["llm_calls_per_10_steps"] <= report["targets"]["llm_calls_per_10_steps"]
        and report["premature_done"] <= report["targets"]["premature_done"]
    )


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_malformed_line_is_refused_with_its_number(tmp_path: Path, settings: Settings) -> None:
    good = SHIPPED.read_text(encoding="utf-8").splitlines()[0]
    bad_final = json.dumps({**json.loads(good), "final": "gave up"})
    with pytest.raises(DataError, match=r"line 3: final") as caught:
        loop.run(_write(tmp_path / "a.jsonl", [good, "", bad_final]), settings=settings)
    assert "fix:" in str(caught.value)
    with pytest.raises(DataError, match=r"line 2: Invalid JSON"):
        load_trajectories(_write(tmp_path / "b.jsonl", [good, "{not json"]))
    renamed = json.loads(good)
    renamed["steps"][0]["definition"]["name"] = "some_other_tool"
    with pytest.raises(DataError, match=r"line 1: steps\.0: .*some_other_tool"):
        load_trajectories(_write(tmp_path / "c.jsonl", [json.dumps(renamed)]))
    with pytest.raises(DataError, match="holds no trajectories"):
        load_trajectories(_write(tmp_path / "d.jsonl", [""]))
    with pytest.raises(DataError, match="cannot read"):
        load_trajectories(tmp_path / "missing.jsonl")


@pytest.mark.slow
def test_the_cli_prints_the_report(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTFLOW_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("AGENTFLOW_DATABASE_URL", settings.resolved_database_url)
    two = _write(tmp_path / "two.jsonl", SHIPPED.read_text(encoding="utf-8").splitlines()[:2])
    result = CliRunner().invoke(app, ["bench", "loop", "--trajectories", str(two), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["trajectories"] == 2
    assert {"llm_calls_per_10_steps", "premature_done", "missed_done", "escalations"} <= set(report)
    broken = _write(tmp_path / "broken.jsonl", ['{"goal": "x", "steps": [], "final": "done"}'])
    refused = CliRunner().invoke(app, ["bench", "loop", "--trajectories", str(broken)])
    assert refused.exit_code == 1 and "line 1: steps" in refused.output
