"""`agentflow run / approvals / resume / setup / assess`: work with agent threads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from agentflow.cli._output import console, emit_json, fail
from agentflow.errors import AgentflowError
from agentflow.settings import Settings
from agentflow.signing import signing_key

DEFAULT_GRAPH = "graphs/support.py"


def _print_result(res: Any, json_out: bool) -> None:
    if json_out:
        emit_json(res.model_dump(mode="json"))
        return
    console.print(
        f"[bold]thread[/] {res.thread_id}  [bold]route[/] {res.route}  "
        f"[bold]status[/] {res.status}  [bold]LLM calls[/] {res.llm_calls}"
    )
    for d in res.decisions:
        flag = " (escalated)" if d.get("escalated") else ""
        console.print(
            f"  {d['role']:<20} {escape(json.dumps(d['value'], default=str)[:60]):<40} "
            f"conf={d['confidence']:.2f} {d['source']:<12} {d['latency_ms']:.1f} ms{flag}"
        )
    if res.pending_approval:
        p = res.pending_approval
        console.print(
            f"[yellow]waiting for approval[/] {p['approval_id']}: {p['tool']} "
            f"{escape(json.dumps(p['args']))} digest={p['digest'][:16]}…"
        )
    if res.outcome:
        # Model and tool text is data: rich must not read "[...]" in it as markup.
        console.print(f"[green]outcome[/] {escape(res.outcome)}")
    if res.internal_error:
        console.print(f"[red]error[/] {escape(res.internal_error)}")
    if res.needs_input:
        asked = "to confirm" if res.needs_confirmation else "for"
        console.print(
            f"[yellow]asked the user {asked}[/] {', '.join(res.needs_input)}: reply with "
            f'`agentflow run "..." --thread {res.thread_id}`'
        )
    typer.echo(res.status)


def _weak_llm_warning(settings: Settings) -> None:
    if not settings.llm_base_url:
        console.print(
            "[yellow]note:[/] no AGENTFLOW_LLM_BASE_URL: the LLM role is played by the "
            "local 270M GGUF, a weak default (set an OpenAI-compatible endpoint)."
        )


def _graph_and_message(args: list[str], graph: str | None) -> tuple[str, str]:
    """``[GRAPH_MODULE] MESSAGE``: one positional is the message, two are graph then message."""
    if len(args) == 1:
        return graph or DEFAULT_GRAPH, args[0]
    if len(args) == 2 and graph is None:
        return args[0], args[1]
    if len(args) == 2:
        fail(f"graph given twice ({args[0]!r} and --graph {graph!r}); give one of them")
    fail(
        f"expected [GRAPH_MODULE] MESSAGE, got {len(args)} arguments; quote a message "
        'that has spaces: agentflow run graphs/support.py "where is my order?"'
    )


def run(
    args: list[str] = typer.Argument(
        ...,
        metavar="[GRAPH_MODULE] MESSAGE",
        help=f"Graph module (path or dotted; default {DEFAULT_GRAPH}) and the user's message.",
    ),
    graph: str | None = typer.Option(
        None, "--graph", "-g", help="Graph module, as an option instead of the first argument."
    ),
    thread: str | None = typer.Option(None, "--thread", help="Thread id (default: a new one)."),
    customer: str | None = typer.Option(None, "--customer", help="Customer email (support agent)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Run a graph on one message; print the route, every decision, LLM calls and the outcome."""
    # Deferred: a second or more of start-up (LangGraph, torch, llama.cpp); other commands skip it.
    from agentflow.runtime import AgentRuntime

    graph, message = _graph_and_message(args, graph)
    settings = Settings()
    _weak_llm_warning(settings)
    try:
        with AgentRuntime.open(graph, settings=settings) as rt:
            res = rt.run(
                message, thread_id=thread, customer={"email": customer} if customer else None
            )
    except AgentflowError as exc:
        fail(exc)
    _print_result(res, json_out)
    if res.status == "failed":
        raise typer.Exit(1)


def approvals(
    graph: str = typer.Option(DEFAULT_GRAPH, "--graph", "-g", help="Graph module."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List pending approvals across all threads."""
    # Deferred: a second or more of start-up (LangGraph, torch, llama.cpp); other commands skip it.
    from agentflow.runtime import AgentRuntime

    try:
        with AgentRuntime.open(graph) as rt:
            pending = [p.model_dump(mode="json") for p in rt.pending_all()]
    except AgentflowError as exc:
        fail(exc)
    if json_out:
        emit_json(pending)
        return
    if not pending:
        typer.echo("no pending approvals")
    for p in pending:
        typer.echo(
            f"{p['thread_id']}  {p['approval_id']}  {p['tool']} {json.dumps(p['args'])}  "
            f"class={p['assessment'].get('class')}  digest={p['digest']}"
        )


def resume(
    thread: str = typer.Argument(..., help="Thread waiting for approval (or stopped on an error)."),
    approve: bool = typer.Option(False, "--approve", help="Approve the pending action."),
    reject: bool = typer.Option(False, "--reject", help="Reject it."),
    edit: str | None = typer.Option(None, "--edit", help="Approve with these arguments (JSON)."),
    respond: str | None = typer.Option(None, "--respond", help="Send a message back to the agent."),
    by: str | None = typer.Option(None, "--by", help="Approver name (required to answer)."),
    digest: str | None = typer.Option(
        None, "--digest", help="Digest you approve (default: the pending one)."
    ),
    graph: str = typer.Option(DEFAULT_GRAPH, "--graph", "-g", help="Graph module."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Answer a pending approval, or with no answer, continue a thread stopped by an error."""
    # Deferred: a second or more of start-up (LangGraph, torch, llama.cpp); other commands skip it.
    from agentflow.nodes.approval import ApprovalAnswer
    from agentflow.runtime import AgentRuntime

    chosen = [
        k
        for k, v in {"approve": approve, "reject": reject, "edit": edit, "respond": respond}.items()
        if v
    ]
    if len(chosen) > 1:
        fail("choose one of --approve, --reject, --edit, --respond", code=2)
    try:
        with AgentRuntime.open(graph) as rt:
            if not chosen:
                res = rt.retry(thread)
            else:
                if not by:
                    fail("--by NAME is required to answer an approval", code=2)
                pending = rt.pending(thread)
                answer = ApprovalAnswer(
                    approval_id=pending.approval_id if pending else "none",
                    decision=chosen[0],  # type: ignore[arg-type]
                    approver=by,
                    digest=digest or (pending.digest if pending else ""),
                    args=json.loads(edit) if edit else None,
                    message=respond,
                )
                res = rt.answer(thread, answer)
    except (AgentflowError, json.JSONDecodeError) as exc:
        fail(exc if isinstance(exc, AgentflowError) else f"--edit is not JSON: {exc}")
    _print_result(res, json_out)


def setup() -> None:
    """Create or migrate the database (checkpoints + ledger) and make sure the key that
    signs trained heads exists. Safe to run again."""
    # Deferred: a second or more of start-up (LangGraph, torch, llama.cpp); other commands skip it.
    from agentflow.checkpoints.ledger import Ledger
    from agentflow.checkpoints.savers import setup_savers

    settings = Settings()
    settings.ensure_data_dir()
    try:
        setup_savers(settings.resolved_database_url)
        ledger = Ledger.from_settings(settings)
        ledger.setup()
        ledger.close()
        key = signing_key(settings)
    except AgentflowError as exc:
        fail(exc)
    typer.echo(f"database ready: {settings.resolved_database_url}")
    typer.echo(f"signing key: {key.source} (key id {key.key_id})")


def assess(
    tool_file: Path = typer.Option(
        ..., "--tool", help="MCP tool definition (.json) or many (.jsonl)."
    ),
    args: str = typer.Option(
        "{}", "--args", help="Arguments of the call (JSON), for a single tool."
    ),
    json_out: bool = typer.Option(
        False, "--json", help="Print JSON (one line per tool for .jsonl)."
    ),
) -> None:
    """Run the consequence modeler on tool definitions; print class, confidence, source, floor."""
    # Deferred: a second or more of start-up (LangGraph, torch, llama.cpp); other commands skip it.
    from agentflow.models.encoder import load_encoder
    from agentflow.nodes.consequence_modeler import ConsequenceModeler
    from agentflow.retrain import current_head

    settings = Settings()
    try:
        encoder = load_encoder(settings)
        modeler = ConsequenceModeler(
            head=current_head("consequence_modeler", settings, encoder),
            encoder=encoder,
            llm=None,
            threshold=settings.consequence_threshold,
        )
        text = tool_file.read_text(encoding="utf-8")
        if tool_file.suffix == ".jsonl":
            items = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            items = [{"tool": json.loads(text), "args": json.loads(args)}]
    except (AgentflowError, OSError, json.JSONDecodeError) as exc:
        fail(exc if isinstance(exc, AgentflowError) else f"cannot read {tool_file}: {exc}")
    for item in items:
        definition = item.get("tool", item)
        result = modeler.assess(definition, item.get("args") or {})
        final = result.decisions[-1]
        row = {
            "tool": definition.get("name"),
            "class": result.cls,
            "confidence": round(final.confidence, 4),
            "source": final.source,
            "floor": result.floor,
            "proposed": result.proposed,
            # Which artifact decided: the last head `agentflow train` kept, else the
            # head of the shipped examples.
            "head_sha256": modeler.head.sha256 if modeler.head is not None else None,
        }
        typer.echo(json.dumps(row) if json_out else "  ".join(f"{k}={v}" for k, v in row.items()))
