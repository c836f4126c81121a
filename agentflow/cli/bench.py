"""`agentflow bench`: measure latency and LLM savings (never asserted in tests)."""

from __future__ import annotations

from pathlib import Path

import typer

from agentflow.cli._output import emit_json, emit_table, fail, progress
from agentflow.errors import AgentflowError
from agentflow.settings import Settings

app = typer.Typer(
    help="Benchmarks: decisions, idempotency, workload, loop, overhead, load.", no_args_is_help=True
)


@app.command("decisions")
def decisions(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    n: int = typer.Option(300, "--n", help="Encoder-head decisions timed."),
    generative: bool = typer.Option(True, "--generative/--no-generative", help="Include the GGUF."),
) -> None:
    """p50/p95 of an encoder-head decision, a GGUF choice and a GGUF schema extraction."""
    # Deferred: a second or more of start-up (LangGraph, torch, llama.cpp); other commands skip it.
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
    # Deferred: a second or more of start-up (LangGraph, torch, llama.cpp); other commands skip it.
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
    # Deferred: a second or more of start-up (LangGraph, torch, llama.cpp); other commands skip it.
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
    # Deferred: a second or more of start-up (LangGraph, torch, llama.cpp); other commands skip it.
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
    # Deferred: a second or more of start-up (LangGraph, torch, llama.cpp); other commands skip it.
    from agentflow.benchmarks.overhead import run

    try:
        report = run(n=n)
    except AgentflowError as exc:
        fail(exc)
    emit_json(report) if json_out else emit_table("framework overhead", report)


def _counts(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        fail(f"{option} takes positive whole numbers separated by commas, e.g. 1,2")
    return values


@app.command("load")
def load(
    graph: str = typer.Option("graphs/support.py", "--graph", help="Graph module (path)."),
    workers: str = typer.Option("1,2", "--workers", help="Worker counts to measure, e.g. 1,2."),
    clients: str = typer.Option("4", "--clients", help="Concurrent clients, e.g. 2,4."),
    requests: int = typer.Option(100, "--requests", min=1, help="Submissions per round."),
    database_url: str | None = typer.Option(
        None, "--database-url", help="A Postgres server URL (default: start Debian's)."
    ),
    redis_url: str | None = typer.Option(
        None, "--redis-url", help="A Redis URL (default: start Debian's redis-server)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Workers on one Postgres and one Redis, driven over HTTP while one is killed at random:
    runs/s, p50/p95, duplicates, lost, kills and the scaling from 1 to 2 workers."""
    # Deferred: a second or more of start-up (LangGraph, torch, llama.cpp); other commands skip it.
    from agentflow.benchmarks.load import run

    try:
        report = run(
            graph,
            workers=_counts(workers, "--workers"),
            clients=_counts(clients, "--clients"),
            requests=requests,
            database_url=database_url,
            redis_url=redis_url,
        )
    except AgentflowError as exc:
        fail(exc)
    emit_json(report) if json_out else emit_table("load", report)
