"""`agentflow bench idempotency` on the embedded Valkey: every figure it reports is there
and consistent (the figures themselves are measurements, never asserted against a time)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from agentflow.cli import app


def test_the_report_separates_the_store_floor_from_the_framework(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AGENTFLOW_REDIS_URL", raising=False)  # the embedded store is measured
    result = CliRunner().invoke(app, ["bench", "idempotency", "--json", "--n", "200"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["store"] == "embedded-valkey" and report["n"] == 200
    # The embedded server flushes every write: that is what the floor measures.
    assert report["store_fsync"] == "appendfsync always"
    for key in ("bare_p50_ms", "guarded_p50_ms", "store_floor_p50_ms", "with_journal_p50_ms"):
        assert report[key] > 0, key
    assert report["guarded_p95_ms"] >= report["guarded_p50_ms"]
    overhead = report["guarded_p50_ms"] - report["bare_p50_ms"]
    assert abs(report["overhead_p50_ms"] - overhead) < 1e-3
    above = report["overhead_p50_ms"] - report["store_floor_p50_ms"]
    assert abs(report["overhead_above_floor_p50_ms"] - above) < 1e-3
    assert report["meets_target"] == (report["overhead_p50_ms"] <= report["target_overhead_p50_ms"])
