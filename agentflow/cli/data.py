"""`agentflow data`: prepare labelled example files."""

from __future__ import annotations

from pathlib import Path

import typer

from agentflow.cli._output import emit_json, fail
from agentflow.errors import DataError
from agentflow.examples import load_examples, stratified_split, write_examples

app = typer.Typer(help="Prepare labelled example files.", no_args_is_help=True)


@app.command("split")
def split(
    file: Path = typer.Argument(..., help="CSV or JSONL with text and label columns."),
    train_out: Path = typer.Option(..., "--train-out", help="Where to write the training part."),
    test_out: Path = typer.Option(..., "--test-out", help="Where to write the held-out part."),
    test_size: float = typer.Option(0.2, help="Share held out, per label."),
    seed: int = typer.Option(0, help="Shuffle seed (the split is deterministic)."),
    text_col: str = typer.Option("text", help="Text column."),
    label_col: str = typer.Option("label", help="Label column (falls back to 'category')."),
) -> None:
    """Stratified, deterministic train/test split (each label keeps its share)."""
    try:
        examples = load_examples(file, text_col, label_col)
        train, test = stratified_split(examples, test_size, seed)
    except DataError as exc:
        fail(exc)
    write_examples(train_out, train)
    write_examples(test_out, test)
    emit_json(
        {
            "train": str(train_out),
            "n_train": len(train),
            "test": str(test_out),
            "n_test": len(test),
            "seed": seed,
            "test_size": test_size,
        }
    )
