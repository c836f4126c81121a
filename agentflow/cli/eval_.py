"""`agentflow eval`: measure small models on labelled data."""

from __future__ import annotations

from pathlib import Path

import typer

from agentflow.cli._output import console, emit_json, emit_rows, emit_table, fail, progress
from agentflow.errors import AgentflowError, DataError
from agentflow.evaluation import evaluate_router
from agentflow.examples import load_examples, stratified_split
from agentflow.extraction import FieldCalibration
from agentflow.extraction_eval import evaluate_extraction, extraction_outcomes, load_labelled
from agentflow.graph_module import load_graph_module
from agentflow.models.encoder import load_encoder
from agentflow.settings import Settings

app = typer.Typer(help="Evaluate small models on labelled data.", no_args_is_help=True)


@app.command("router")
def router(
    train: Path = typer.Option(..., "--train", help="Training examples (CSV or JSONL)."),
    test: Path | None = typer.Option(
        None,
        "--test",
        help="Test examples; default: a stratified 20% held out of --train (seed 0).",
    ),
    text_col: str = typer.Option("text", "--text-col", help="Text column."),
    label_col: str = typer.Option(
        "label", "--label-col", help="Label column (falls back to 'category')."
    ),
    oos_label: str | None = typer.Option(None, "--oos-label", help="Label of out-of-scope rows."),
    threshold: float = typer.Option(
        0.8, "--threshold", help="Confidence needed to act without the LLM."
    ),
    holdout_intents: int = typer.Option(
        0,
        "--holdout-intents",
        min=0,
        help="Leave K intents out of training whole and report the share of their "
        "messages escalated (out-of-scope data made from in-scope data).",
    ),
    seed: int = typer.Option(0, "--seed", help="Which intents --holdout-intents leaves out."),
    samples: int = typer.Option(
        300, "--latency-samples", help="Messages timed one at a time (>=200)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Train an encoder head on --train and report accuracy, coverage, ECE and latency,
    with the escalation curve over the threshold (out-of-scope and held-out intents)."""
    try:
        train_rows = load_examples(train, text_col, label_col)
        if test is None:
            train_rows, test_rows = stratified_split(train_rows, 0.2, 0)
            console.print(f"no --test: holding out {len(test_rows)} rows (20%, seed 0) of {train}")
        else:
            test_rows = load_examples(test, text_col, label_col)
        encoder = load_encoder(Settings())
        with progress(not json_out) as update:
            report = evaluate_router(
                train_rows,
                test_rows,
                encoder,
                threshold=threshold,
                oos_label=oos_label,
                holdout_intents=holdout_intents,
                seed=seed,
                latency_samples=samples,
                progress=update,
            )
    except AgentflowError as exc:
        fail(exc)
    if json_out:
        emit_json(report)
    else:
        emit_table("router evaluation", report)


@app.command("consequence")
def consequence(
    splits: int = typer.Option(5, "--splits", min=1, help="Random splits (or domain folds)."),
    held_out: str = typer.Option(
        "tool",
        "--held-out",
        help="What training never sees: 'tool' (20% of tool names per split) or 'domain' "
        "(domains dealt into --splits folds, each held out once; figures per domain).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Consequence modeler on the shipped tool set, on tools or domains held out of
    training: the head's accuracy, coverage and ECE, and what the agent finally does
    without an LLM (money_moving_stopped, reads_safe), averaged over several splits."""
    # Deferred: a second or more of start-up (LangGraph, torch, llama.cpp); other commands skip it.
    from agentflow.heads import consequence_rows
    from agentflow.nodes.consequence_eval import evaluate_consequence

    if held_out not in ("tool", "domain"):
        fail(f"--held-out must be 'tool' or 'domain', not {held_out!r}")
    try:
        report = evaluate_consequence(
            consequence_rows(),
            load_encoder(Settings()),
            held_out=held_out,  # type: ignore[arg-type]
            splits=splits,
        )
    except AgentflowError as exc:
        fail(exc)
    if json_out:
        emit_json(report)
        return
    by_domain = report.pop("by_domain")
    emit_table(f"consequence modeler (held-out {held_out}s)", report)
    emit_rows("per domain (final class: head + floors, no LLM)", by_domain)


@app.command("loop")
def loop(
    splits: int = typer.Option(5, "--splits", min=1, help="Random splits to average."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Loop evaluator on the shipped examples: 20% of goals held out, averaged over splits."""
    import json as _json
    from importlib.resources import files

    # Deferred: a second or more of start-up (LangGraph, torch, llama.cpp); other commands skip it.
    from agentflow.evaluation import evaluate_grouped
    from agentflow.heads import loop_examples

    rows = files("agentflow.nodes").joinpath("data", "loop_examples.jsonl").read_text().splitlines()
    groups = [_json.loads(r)["goal"] for r in rows if r.strip()]
    examples, extra = loop_examples()
    report = evaluate_grouped(
        "loop_evaluator", examples, groups, load_encoder(Settings()), extra=extra, splits=splits
    )
    emit_json(report) if json_out else emit_table("loop evaluator (held-out goals)", report)


@app.command("extract")
def extract(
    graph: str = typer.Option("graphs/support.py", "--graph", help="Graph module."),
    data: Path | None = typer.Option(
        None, "--data", help="Labelled extractions (default: the module's LABELLED)."
    ),
    folds: int = typer.Option(5, "--folds", min=2, help="Cross-fitting folds."),
    threshold: float = typer.Option(
        0.8, "--threshold", help="Confidence needed to act on a field without asking."
    ),
    write: bool = typer.Option(
        False,
        "--write-calibration",
        help="Fit the calibration on every row and write it where the module reads it.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Per-field accuracy, calibration (ECE) and coverage of a graph's extractors on
    labelled extractions; the module provides ``extractors()``, ``LABELLED``,
    ``CALIBRATION`` and ``calibration_key()``."""
    try:
        module = load_graph_module(graph)
        for needed in ("extractors", "LABELLED", "CALIBRATION", "calibration_key"):
            if not hasattr(module, needed):
                raise DataError(
                    f"{graph} has no {needed}",
                    hint="a graph module measured by `eval extract` defines extractors(), "
                    "LABELLED, CALIBRATION and calibration_key()",
                )
        extractors = module.extractors(Settings())
        rows = load_labelled(data or module.LABELLED, list(extractors))
        outcomes = extraction_outcomes(rows, extractors)
        report = evaluate_extraction(outcomes, folds=folds, threshold=threshold)
        if write:
            fitted = FieldCalibration.fit(
                ((f, e, r) for _i, f, e, r in outcomes), key=module.calibration_key()
            )
            fitted.save(Path(module.CALIBRATION))
            report["calibration_written"] = str(module.CALIBRATION)
    except AgentflowError as exc:
        fail(exc)
    emit_json(report) if json_out else emit_table("extraction (cross-fitted)", report)
