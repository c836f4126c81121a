"""`agentflow bench`: measure latency and LLM savings (never asserted in tests)."""

from __future__ import annotations

from pathlib import Path

import typer

from agentflow.cli._output import emit_json, emit_table, fail, progress
from agentflow.errors import AgentflowError
from agentflow.settings import Settings

app = typer.Typer(
    help="Benchmarks: decisions, idempotency, workload, loop, overhead.", no_args_is_help=True
)


@app.command("decisions")
def decisions(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    n: int = typer.Option(300, "--n", help="Encoder-head decisions timed."),
    generative: bool = typer.Option(True, "--generative/--no-generative", help="Include the GGUF."),
) -> None:
    """p50/p95 of an encoder-head decision, a GGUF choice and a GGUF schema extraction."""
    from agentflow.benchmarks.decisions import run

    try:
        report = run(Settings(), n_head=n, generative=generative)
    except AgentflowError as exc:
        fail(exc)
    emit_json(report) if json_out else emit_table("decision latency", report)


@app.command("idempotency")
def idempotency(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    n: int = typer.Option(2000, "--n", help="Calls timed."),
) -> None:
    """p50/p95 overhead of a guarded call over a bare call against the local store."""
    from agentflow.benchmarks.idempotency import run

    try:
        report = run(Settings().redis_url, n=n)
    except AgentflowError as exc:
        fail(exc)
    emit_json(report) if json_out else emit_table("idempotency overhead", report)


@app.command("workload")
def workload(
    graph: str = typer.Option("graphs/support.py", "--graph", help="Graph module."),
    file: Path = typer.Option(
        Path("graphs/data/support_workload.jsonl"), "--workload", help="Labelled workload."
    ),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N messages."),
    llm_limit: int | None = typer.Option(
        None, "--llm-limit", help="Only the first N in all-LLM mode."
    ),
    slm_only: bool = typer.Option(False, "--slm-only", help="Skip the all-LLM comparison."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Run the workload SLM-first and all-LLM; print no-LLM share, accuracy, LLM calls, tokens."""
    from agentflow.benchmarks.workload import run

    try:
        with progress(not json_out) as update:
            report = run(
                graph,
                file,
                limit=limit,
                llm_limit=llm_limit,
                modes=("slm",) if slm_only else ("slm", "llm"),
                progress=update,
            )
    except AgentflowError as exc:
        fail(exc)
    emit_json(report) if json_out else emit_table("workload", report)


@app.command("loop")
def loop(
    file: Path | None = typer.Option(
        None,
        "--trajectories",
        help="Recorded runs, one JSON object per line (default: the shipped ones).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Replay recorded multi-step runs through the loop evaluator and consequence modeler:
    LLM calls per 10 steps, premature and missed done, escalations."""
    from agentflow.benchmarks.loop import run

    try:
        with progress(not json_out) as update:
            report = run(file, progress=update)
    except AgentflowError as exc:
        fail(exc)
    emit_json(report) if json_out else emit_table("loop control", report)


@app.command("overhead")
def overhead(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    n: int = typer.Option(300, "--n", help="Requests timed through each graph."),
) -> None:
    """p50 of the agent's graph with no-op deciders and tools against the same graph in
    plain LangGraph (same nodes, same checkpointer), and their ratio."""
    from agentflow.benchmarks.overhead import run

    try:
        report = run(n=n)
    except AgentflowError as exc:
        fail(exc)
    emit_json(report) if json_out else emit_table("framework overhead", report)
