"""`agentflow models`: check that the small models are present, untampered and runnable."""

from __future__ import annotations

import typer

from agentflow.cli._output import console, emit_json, emit_table, fail
from agentflow.errors import AgentflowError
from agentflow.models.native import smoke_check
from agentflow.models.registry import check_models
from agentflow.settings import Settings

app = typer.Typer(help="Inspect and verify the small models.", no_args_is_help=True)


@app.command("check")
def check(
    json_out: bool = typer.Option(True, "--json/--table", help="JSON (default) or a table."),
) -> None:
    """Verify every configured model file by sha256 and decode with the GGUF; exit 1 on a problem."""
    settings = Settings()
    report = check_models(settings)
    if report["models"].get("gguf", {}).get("ok"):
        try:
            report["native"] = smoke_check(settings).as_dict()
        except AgentflowError as exc:
            report["ok"] = False
            report["native"] = {"ok": False, "error": exc.message, "fix": exc.hint}
    if json_out:
        emit_json(report)
    else:
        rows = dict(report["models"]) | {"llm": report["llm"]}
        emit_table("models", rows | ({"native": report["native"]} if "native" in report else {}))
    if not report["ok"]:
        raise typer.Exit(1)


@app.command("smoke")
def smoke() -> None:
    """Load the GGUF in a child process and decode a few tokens (``make install`` runs this)."""
    try:
        result = smoke_check(Settings())
    except AgentflowError as exc:
        fail(exc)
    console.print(
        f"llama.cpp ok: decoded {result.tokens} tokens in {result.seconds:.1f} s "
        f"with {result.library}\n  build: {result.system_info}\n  cpu:   {result.cpu}"
    )
