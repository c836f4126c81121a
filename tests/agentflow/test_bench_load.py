"""`agentflow bench load` and `bench overhead` hold together; no timing is asserted.

The load benchmark runs for real on the model-free approvals demo: one and two workers
on the session's Postgres and Redis, a worker killed every few seconds, payments made
slow enough that kills land inside them. What is asserted is what must hold whatever the
machine's speed: every submission reaches a final status, no payment runs twice, every
kill happened, and each retried submission got its first run back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentflow.benchmarks import load, overhead
from agentflow.settings import Settings


def test_bench_load_kills_workers_and_loses_nothing(
    postgres_server: Any, redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTFLOW_DEMO_PAYMENT_SECONDS", "0.6")
    report = load.run(
        "graphs/approvals_demo.py",
        workers=(1, 2),
        clients=(3,),
        requests=30,
        database_url=postgres_server.url(),
        redis_url=redis_server.url,
        kill_every_s=(5.0, 8.0),
        note=lambda _msg: None,
    )
    assert [(r["workers"], r["clients"]) for r in report["rounds"]] == [(1, 3), (2, 3)]
    for r in report["rounds"]:
        assert r["lost"] == 0 and r["duplicates"] == 0, r
        assert r["kills"] >= 1, r  # the round outlasted the first kill
        assert r["replays_not_the_first_run"] == 0, r
        assert 0 < r["approved"] <= r["submissions"] and r["effects"] <= r["approved"], r
        assert r["p50_ms"] is not None and r["p50_ms"] <= r["p95_ms"], r
    assert set(report["scaling_1_to_2_workers"]) == {"3_clients"}
    assert report["lost"] == 0 and report["duplicates"] == 0


def test_bench_overhead_reports_both_graphs_and_their_ratio(
    tmp_path: Path, valkey_server: Any
) -> None:
    settings = Settings(data_dir=tmp_path, redis_url=valkey_server.url)
    report = overhead.run(n=20, warmup=3, settings=settings)
    assert report["requests"] == 20
    ours, theirs = report["agentflow_p50_ms"], report["plain_langgraph_p50_ms"]
    assert ours > 0 and theirs > 0
    assert report["ratio_p50"] == pytest.approx(ours / theirs, rel=0.01)
    assert report["meets_target"] == (report["ratio_p50"] <= report["target_ratio"])
