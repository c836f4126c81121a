"""`agentflow bench workload`: the reference workload, SLM-first versus all-LLM.

Both modes run every labelled message through the same graph in one process, on a
throw-away database and back office; the all-LLM mode replaces every small-model role by
the LLM. A run that stops for approval counts as finished (that is where it must stop).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.language_models import BaseChatModel

from agentflow.settings import Settings

__all__ = ["run"]


def _mode(
    graph: str,
    rows: list[dict[str, Any]],
    settings: Settings,
    llm: BaseChatModel | None,
    slm_roles: bool,
    progress: Any,
) -> dict[str, Any]:
    from agentflow.runtime import AgentRuntime

    results = []
    with AgentRuntime.open(graph, settings=settings, llm=llm, slm_roles=slm_roles) as rt:
        for i, row in enumerate(rows):
            res = rt.run(row["text"])
            results.append((row, res))
            progress("SLM-first" if slm_roles else "all-LLM", i + 1, len(rows))
    n = len(results)
    lat = [r.latency_ms for _, r in results]
    return {
        "n": n,
        "no_llm_fraction": round(sum(r.llm_calls == 0 for _, r in results) / n, 4),
        "routing_accuracy": round(
            sum(r.route == row["expected_route"] for row, r in results) / n, 4
        ),
        "llm_calls_per_request": round(sum(r.llm_calls for _, r in results) / n, 4),
        "llm_tokens": sum(r.llm_tokens for _, r in results),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p95_ms": round(float(np.percentile(lat, 95)), 1),
        "statuses": {
            s: sum(r.status == s for _, r in results) for s in {r.status for _, r in results}
        },
        "misrouted": [
            {"id": row.get("id"), "expected": row["expected_route"], "got": r.route}
            for row, r in results
            if r.route != row["expected_route"]
        ][:20],
    }


def run(
    graph: str,
    workload: Path,
    *,
    settings: Settings | None = None,
    llm: BaseChatModel | None = None,
    limit: int | None = None,
    llm_limit: int | None = None,
    modes: tuple[str, ...] = ("slm", "llm"),
    progress: Any = None,
) -> dict[str, Any]:
    """Run the workload in each mode; a JSON-ready report with the ratios."""
    from checkpoints.ledger import Ledger
    from checkpoints.savers import setup_savers

    progress = progress or (lambda *_: None)
    rows = [json.loads(line) for line in workload.read_text().splitlines() if line.strip()][:limit]
    base = settings or Settings()
    report: dict[str, Any] = {
        "graph": graph,
        "workload": str(workload),
        "cores": os.cpu_count(),
        "llm": base.llm_base_url or "local GGUF (weak default)",
    }
    with tempfile.TemporaryDirectory(prefix="agentflow-bench-") as tmp:
        for mode in modes:
            db = f"sqlite:///{tmp}/{mode}.db"
            # A fresh back office per mode, so both modes see the same orders and subscriptions.
            os.environ["AGENTFLOW_SUPPORT_DB"] = f"{tmp}/{mode}-support.db"
            from graphs.support import store

            store.cache_clear()
            settings = base.model_copy(update={"database_url": db})
            setup_savers(db)
            Ledger(db).setup()
            subset = rows if mode == "slm" else rows[:llm_limit]
            report["slm_first" if mode == "slm" else "all_llm"] = _mode(
                graph, subset, settings, llm, mode == "slm", progress
            )
    if "slm_first" in report and "all_llm" in report:
        s, a = report["slm_first"], report["all_llm"]
        report["ratios"] = {
            "llm_calls": round(s["llm_calls_per_request"] / a["llm_calls_per_request"], 4)
            if a["llm_calls_per_request"]
            else None,
            "llm_tokens_per_request": round(
                (s["llm_tokens"] / s["n"]) / (a["llm_tokens"] / a["n"]), 4
            )
            if a["llm_tokens"]
            else None,
            "p50_ms": round(s["p50_ms"] / a["p50_ms"], 4) if a["p50_ms"] else None,
        }
    return report
