"""`agentflow bench workload`: the reference workload, SLM-first versus all-LLM.

Both modes run every labelled message through the same graph in one process, on a
throw-away database and back office; the all-LLM mode replaces every small-model role by
the LLM. A run that stops for approval counts as finished (that is where it must stop),
and so does one that asks the user for a missing detail (``asked_user`` counts those).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.language_models import BaseChatModel

from agentflow.checkpoints.ledger import Ledger
from agentflow.checkpoints.savers import setup_savers
from agentflow.errors import DataError
from agentflow.graph_module import load_graph_module
from agentflow.runtime import AgentRuntime
from agentflow.settings import Settings

__all__ = ["run"]


_Results = list[tuple[dict[str, Any], Any]]


def _mode(
    graph: str,
    rows: list[dict[str, Any]],
    settings: Settings,
    llm: BaseChatModel | None,
    slm_roles: bool,
    progress: Any,
) -> _Results:

    results = []
    with AgentRuntime.open(graph, settings=settings, llm=llm, slm_roles=slm_roles) as rt:
        for i, row in enumerate(rows):
            results.append((row, rt.run(row["text"])))
            progress("SLM-first" if slm_roles else "all-LLM", i + 1, len(rows))
    return results


def _summary(results: _Results) -> dict[str, Any]:
    n = len(results)
    lat = [r.latency_ms for _, r in results]
    by_route: dict[str, list[bool]] = {}
    for row, r in results:
        by_route.setdefault(row["expected_route"], []).append(r.llm_calls == 0)
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
        # A templated question for a missing detail ends the request without the LLM; the
        # count says how many of the no-LLM requests ended that way.
        "asked_user": sum(bool(r.needs_input) for _, r in results),
        "no_llm_by_route": {k: round(sum(v) / len(v), 4) for k, v in sorted(by_route.items())},
        "misrouted": [
            {"id": row.get("id"), "expected": row["expected_route"], "got": r.route}
            for row, r in results
            if r.route != row["expected_route"]
        ][:20],
    }


def _ratio(slm: float, llm: float) -> float | None:
    return round(slm / llm, 4) if llm else None


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

    progress = progress or (lambda *_: None)
    rows = [json.loads(line) for line in workload.read_text().splitlines() if line.strip()][:limit]
    if not rows:
        raise DataError(f"{workload} holds no messages", hint="one JSON object per line")
    base = settings or Settings()
    report: dict[str, Any] = {
        "graph": graph,
        "workload": str(workload),
        "cores": os.cpu_count(),
        "llm": base.llm_base_url or "local GGUF (weak default)",
    }
    # A graph with a back office of its own resets it per mode (``reset(folder)``, and
    # ``reset(None)`` when done), so both modes see the same orders and subscriptions.
    reset = getattr(load_graph_module(graph), "reset", None) or (lambda _folder: None)
    results: dict[str, _Results] = {}
    with tempfile.TemporaryDirectory(prefix="agentflow-bench-") as tmp:
        try:
            for mode in modes:
                db = f"sqlite:///{tmp}/{mode}.db"
                reset(Path(tmp) / mode)
                settings = base.model_copy(update={"database_url": db})
                setup_savers(db)
                Ledger(db).setup()
                subset = rows if mode == "slm" else rows[:llm_limit]
                results[mode] = _mode(graph, subset, settings, llm, mode == "slm", progress)
        finally:
            reset(None)
    if "slm" in results:
        report["slm_first"] = _summary(results["slm"])
    if "llm" in results:
        report["all_llm"] = _summary(results["llm"])
    if "slm" in results and "llm" in results:
        # Compare like with like: SLM-first on the rows the all-LLM mode ran.
        s = _summary(results["slm"][: len(results["llm"])])
        a = report["all_llm"]
        report["slm_first_on_the_same_rows"] = s
        report["ratios"] = {
            "llm_calls": _ratio(s["llm_calls_per_request"], a["llm_calls_per_request"]),
            "llm_tokens_per_request": _ratio(s["llm_tokens"] / s["n"], a["llm_tokens"] / a["n"]),
            "p50_ms": _ratio(s["p50_ms"], a["p50_ms"]),
        }
    return report
