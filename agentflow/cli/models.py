"""`agentflow models`: check that the small models and heads are present, untampered
and runnable."""

from __future__ import annotations

from pathlib import Path

import typer

from agentflow.cli._output import console, emit_json, fail
from agentflow.cli.agent import DEFAULT_GRAPH
from agentflow.errors import AgentflowError
from agentflow.models.digest import folder_digest, sha256_file
from agentflow.models.native import smoke_check
from agentflow.settings import Settings

app = typer.Typer(help="Inspect and verify the small models.", no_args_is_help=True)


@app.command("check")
def check(
    graph: str | None = typer.Option(
        None,
        "--graph",
        "-g",
        help="Graph whose router head to check (default: graphs/support.py when present).",
    ),
    decode: bool = typer.Option(
        True, "--decode/--no-decode", help="Also decode a few tokens with the GGUF."
    ),
    json_out: bool = typer.Option(False, "--json", help="One JSON document instead of lines."),
) -> None:
    """Verify every artifact: the signing key, the encoder (every file), the GGUF and every
    head in use (kept and cached; signature, sha256, encoder); one line each, exit 1 on a
    problem."""
    # Deferred: a second or more of start-up (LangGraph, torch, llama.cpp); other commands skip it.
    from agentflow.integrity import check_artifacts  # the heads pull in the assembly floor

    settings = Settings()
    if graph is None and Path(DEFAULT_GRAPH).is_file():
        graph = DEFAULT_GRAPH
    statuses = check_artifacts(settings, graph)
    ok = all(s.ok for s in statuses)
    native: dict[str, object] | None = None
    gguf_ok = next(s for s in statuses if s.artifact == "gguf").ok
    if decode and gguf_ok:
        try:
            native = smoke_check(settings).as_dict()
        except AgentflowError as exc:
            ok = False
            native = {"ok": False, "error": exc.message, "fix": exc.hint}
    llm = (
        {"kind": "openai-compatible", "url": settings.llm_base_url, "model": settings.llm_model}
        if settings.llm_base_url
        else {"kind": "local-gguf", "warning": "weak default: the 270M GGUF plays the LLM"}
    )
    if json_out:
        report = {"ok": ok, "artifacts": [s.as_dict() for s in statuses], "llm": llm}
        emit_json(report | ({"native": native} if native is not None else {}))
    else:
        for status in statuses:
            typer.echo(status.line())
        if native is not None:
            if native.get("ok", True) is False:
                typer.echo(f"problem llama.cpp decode  {native['error']} (fix: {native['fix']})")
            else:
                typer.echo(f"ok      llama.cpp decode  {native.get('library', '')}")
        if not settings.llm_base_url:
            console.print("note: no AGENTFLOW_LLM_BASE_URL: the local 270M GGUF plays the LLM")
    if not ok:
        raise typer.Exit(1)


@app.command("hash")
def hash_(path: Path = typer.Argument(..., help="A model folder or file.")) -> None:
    """Print the digest agentflow verifies a model by: a file's sha256, or for a folder
    the digest of every file in it (what AGENTFLOW_ENCODER_SHA256 must be)."""

    if not path.exists():
        fail(f"{path} does not exist")
    typer.echo(folder_digest(path) if path.is_dir() else sha256_file(path))


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
