"""`agentflow bench workload` on a slice of the shipped workload, with the real local
models in the small roles and a fake chat model in the LLM role."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from langchain_core.language_models.fake_chat_models import FakeListChatModel

from agentflow.benchmarks import workload
from tests.fixtures.support_env import support_environment

SHIPPED = Path(__file__).resolve().parents[2] / "graphs" / "data" / "support_workload.jsonl"


def _one_per_route(tmp: Path) -> Path:
    rows: dict[str, dict[str, Any]] = {}
    for line in SHIPPED.read_text().splitlines():
        row = json.loads(line)
        if not row.get("hard"):
            rows.setdefault(row["expected_route"], row)
    path = tmp / "slice.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows.values()))
    return path


def test_slm_first_calls_the_llm_less_than_all_llm(
    tmp_path: Path, valkey_server: Any, heads_cache: Path
) -> None:
    path = _one_per_route(tmp_path)
    before = os.environ.get("AGENTFLOW_SUPPORT_DB")
    with support_environment(tmp_path / "env", valkey_server.url, heads_cache) as settings:
        llm = FakeListChatModel(responses=["order_status"])
        report = workload.run("graphs/support.py", path, settings=settings, llm=llm)
        assert os.environ.get("AGENTFLOW_SUPPORT_DB") == str(tmp_path / "env" / "support.db")
    assert os.environ.get("AGENTFLOW_SUPPORT_DB") == before

    slm, every = report["slm_first"], report["all_llm"]
    assert slm["n"] == every["n"] == 6
    assert set(slm["no_llm_by_route"]) == {
        json.loads(r)["expected_route"] for r in path.read_text().splitlines()
    }
    # The LLM routes need it in both modes; in all-LLM mode every request asks it.
    assert slm["no_llm_by_route"]["pricing"] == slm["no_llm_by_route"]["complaint"] == 0.0
    assert every["no_llm_fraction"] == 0.0 and every["llm_calls_per_request"] >= 1.0
    assert slm["llm_calls_per_request"] < every["llm_calls_per_request"]
    assert report["ratios"]["llm_calls"] < 1.0
    # The small router gets the plain cases right without help.
    assert slm["routing_accuracy"] >= 5 / 6, slm["misrouted"]
