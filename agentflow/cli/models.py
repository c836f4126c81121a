"""`agentflow models`: check that the small models are present and untampered."""

from __future__ import annotations

import typer

from agentflow.cli._output import emit_json, emit_table
from agentflow.models.registry import check_models
from agentflow.settings import Settings

app = typer.Typer(help="Inspect and verify the small models.", no_args_is_help=True)


@app.command("check")
def check(
    json_out: bool = typer.Option(True, "--json/--table", help="JSON (default) or a table."),
) -> None:
    """Verify every configured model file by sha256; exit 1 on any problem."""
    report = check_models(Settings())
    if json_out:
        emit_json(report)
    else:
        emit_table("models", {k: v for k, v in report["models"].items()} | {"llm": report["llm"]})
    if not report["ok"]:
        raise typer.Exit(1)
