"""`agentflow review / train / report`: look back at decisions, retrain heads, sum up a period."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agentflow.cli._output import console, emit_json, emit_table, fail, progress
from agentflow.errors import AgentflowError, DataError
from agentflow.inputs import input_extra, input_text
from agentflow.settings import Settings

__all__ = ["report", "review", "train"]

DEFAULT_GRAPH = "graphs/support.py"
_RELATIVE = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_HEAD_ROLES = ("router", "loop_evaluator", "consequence_modeler")
# Loading a graph or its examples can fail in these ways without being our error.
_LOAD_ERRORS = (AgentflowError, OSError, ImportError)


def parse_when(text: str | None, option: str) -> datetime | None:
    """``--since``/``--until``: an ISO date or time (UTC when it has no zone), or ``7d``,
    ``12h``, ``30m``, ``2w`` back from now."""
    if text is None:
        return None
    match = _RELATIVE.match(text.strip())
    if match:
        return datetime.now(UTC) - timedelta(**{_UNITS[match[2]]: int(match[1])})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise DataError(
            f"{option} {text!r} is neither an ISO date/time nor a span like 7d",
            hint=f"e.g. {option} 2026-03-01, {option} 2026-03-01T12:00+01:00 or {option} 24h",
        ) from exc
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _allowed(graph: str) -> dict[str, frozenset[str]]:
    """The values each head role can take, for roles whose examples load."""
    # Deferred: a second or more of start-up (LangGraph, torch, llama.cpp); other commands skip it.
    from agentflow.retrain import role_examples

    allowed: dict[str, frozenset[str]] = {}
    for role in _HEAD_ROLES:
        try:
            allowed[role] = role_examples(role, graph)[1]
        except _LOAD_ERRORS:
            continue  # no known value set: labels for this role are taken as typed
    return allowed


def _ask(episode: Any) -> str | None:
    first, final = episode.first, episode.final
    console.print(
        f"\n[bold]#{episode.id}[/] {first.role}  {first.created_at:%Y-%m-%d %H:%M}  "
        f"source={first.source}  confidence={first.confidence:.2f}"
    )
    features = input_extra(first.input)
    shown = input_text(first.input) if features is not None else first.input
    shown = shown if isinstance(shown, str) else json.dumps(shown)
    # Inputs and values are data: "[...]" in them is not rich markup.
    console.print(f"  input:   {escape(shown)}")
    if features is not None:  # the loop evaluator's progress, read beside the text
        console.print(f"  features: {', '.join(f'{v:g}' for v in features)}")
    console.print(f"  decided: [bold]{escape(json.dumps(first.value, default=str))}[/]")
    if final.id != first.id:
        console.print(
            f"  acted on ({final.source}): {escape(json.dumps(final.value, default=str))}"
        )
    try:
        answer: str = click.prompt(
            "right value (Enter: the decision is right, s: skip, q: quit)",
            default="",
            show_default=False,
            err=True,
        )
    except click.exceptions.Abort:
        return None
    return answer


def _print_review(rep: Any) -> None:
    out = Console()
    table = Table(title="decisions")
    for col in (
        "id",
        "time",
        "role",
        "value",
        "conf",
        "source",
        "esc",
        "input",
        "outcome",
        "label",
    ):
        table.add_column(col)
    for d in rep.decisions:
        label = d.human_label if d.human_label is not None else d.llm_label
        who = "human" if d.human_label is not None else "llm" if d.llm_label is not None else ""
        table.add_row(
            str(d.id),
            f"{d.created_at:%m-%d %H:%M}",
            d.role,
            json.dumps(d.value, default=str)[:30],
            f"{d.confidence:.2f}",
            d.source,
            "yes" if d.escalated else "",
            d.input,
            json.dumps(d.outcome, default=str)[:30],
            f"{who}: {json.dumps(label, default=str)[:24]}" if who else "",
        )
    out.print(table)
    roles = Table(title="per role")
    for col in (
        "role",
        "n",
        "escalation",
        "labelled",
        "accuracy",
        "outcome acc.",
        "LLM agrees",
        "drift",
    ):
        roles.add_column(col)
    pct = lambda v: "-" if v is None else f"{v:.0%}"  # noqa: E731
    for s in rep.roles.values():
        drift = (
            pct(s.drift_share)
            + " ("
            + ", ".join(f"{b.start}: {b.share:.0%}" for b in s.drift)
            + ")"
            if s.drift
            else f"- ({s.drift_note})"
            if s.drift_note
            else "-"
        )
        roles.add_row(
            s.role,
            str(s.n),
            pct(s.escalation_rate),
            str(s.n_labelled),
            pct(s.accuracy),
            pct(s.outcome_accuracy),
            pct(s.llm_agreement),
            drift,
        )
    out.print(roles)
    if rep.labelled:
        out.print(f"labelled: {', '.join(map(str, rep.labelled))}")


def review(
    role: str | None = typer.Option(
        None, "--role", help="Only this role (router, loop_evaluator, ...)."
    ),
    since: str | None = typer.Option(
        None, "--since", help="From (ISO, UTC if no zone; or 7d, 12h)."
    ),
    until: str | None = typer.Option(None, "--until", help="Until, exclusive (same forms)."),
    sample: int | None = typer.Option(
        None, "--sample", help="Label N random unlabelled decisions, one prompt each."
    ),
    label: list[str] = typer.Option(
        [], "--label", help="ID=VALUE: label without prompting (repeatable)."
    ),
    by: str | None = typer.Option(None, "--by", help="Reviewer name (default: $USER)."),
    graph: str = typer.Option(
        DEFAULT_GRAPH, "--graph", "-g", help="Graph whose routes the router knows."
    ),
    bucket: Literal["hour", "day", "week"] = typer.Option(
        "day", "--bucket", help="Drift time bucket."
    ),
    limit: int = typer.Option(20, "--limit", help="Newest decisions listed (without --sample)."),
    with_drift: bool = typer.Option(
        True, "--drift/--no-drift", help="Measure drift (embeds every input)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the --sample draw."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object (no prompts)."),
) -> None:
    """Show decisions with confidence and outcome, label them, and report accuracy,
    escalation rate and drift per role."""
    # Deferred: a second or more of start-up (LangGraph, torch, llama.cpp); other commands skip it.
    from agentflow.checkpoints.ledger import Ledger
    from agentflow.retrain import current_head
    from agentflow.review import (
        apply_labels,
        build_review,
        label_interactively,
        parse_label,
        sample_unlabelled,
    )

    settings = Settings()
    reviewer = by or os.environ.get("USER") or "reviewer"
    try:
        start, end = parse_when(since, "--since"), parse_when(until, "--until")
        specs = [parse_label(s) for s in label]
        with Ledger.from_settings(settings) as ledger:
            allowed = _allowed(graph) if specs or (sample and not json_out) else {}
            if specs:
                apply_labels(ledger, specs, reviewer, allowed)
            labelled = [ident for ident, _ in specs]
            episodes = ledger.episodes(role, start, end)
            picked = None
            if sample:
                picked = sample_unlabelled(episodes, ledger.labels(role=role), sample, seed)
                if not json_out:
                    labelled += label_interactively(
                        ledger,
                        picked,
                        _ask,
                        reviewer,
                        allowed,
                        tell=lambda m: console.print(f"[red]{m}[/]"),
                    )
            heads, notes, encoder = {}, {}, None
            if with_drift and episodes:
                # Deferred: a second or more of start-up (LangGraph, torch, llama.cpp); other commands skip it.
                from agentflow.models.encoder import load_encoder

                encoder = load_encoder(settings)
                for name in sorted({ep.first.role for ep in episodes}):
                    try:
                        heads[name] = current_head(name, settings, encoder, graph, ledger)
                    except _LOAD_ERRORS as exc:
                        notes[name] = str(exc)
            rep = build_review(
                ledger,
                role=role,
                since=start,
                until=end,
                heads=heads,
                encoder=encoder,
                bucket=bucket,
                listed=picked,
                limit=limit,
                labelled=labelled,
                notes=notes,
            )
    except AgentflowError as exc:
        fail(exc)
    if json_out:
        emit_json(rep.model_dump(mode="json"))
    else:
        _print_review(rep)


def train(
    role: str = typer.Option(
        "router", "--role", help="router, loop_evaluator or consequence_modeler."
    ),
    graph: str = typer.Option(
        DEFAULT_GRAPH, "--graph", "-g", help="Graph whose routes train the router."
    ),
    test_size: float = typer.Option(
        0.25, "--test-size", help="Share held out to compare old and new."
    ),
    tolerance: float = typer.Option(
        0.0, "--tolerance", help="How much worse still counts as not worse."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the held-out split."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Retrain a head from examples + labels + LLM verdicts; keep it only if it is not worse."""
    # Deferred: a second or more of start-up (LangGraph, torch, llama.cpp); other commands skip it.
    from agentflow.acceptance import AcceptancePolicy
    from agentflow.retrain import train as retrain

    settings = Settings()
    try:
        with progress(not json_out) as update:
            result = retrain(
                role,
                settings,
                graph=graph,
                progress=update,
                policy=AcceptancePolicy(test_size=test_size, seed=seed, tolerance=tolerance),
            )
    except AgentflowError as exc:
        fail(exc)
    if json_out:
        emit_json(result.model_dump(mode="json"))
        return
    verdict = "[green]kept[/]" if result.accepted else "[yellow]not kept[/]"
    console.print(f"{role} head {result.sha256[:12]}… {verdict}: {result.reason}")
    rows: dict[str, Any] = {
        "path": result.path,
        "sources": result.sources,
        "held out": result.n_heldout,
        "trained on": result.n_train,
    }
    for name in ("accuracy", "coverage", "handled_correctly", "confident_errors", "ece"):
        old = getattr(result.old, name) if result.old else None
        rows[name] = f"{old if old is not None else '-'} -> {getattr(result.new, name)}"
    emit_table(f"{role} head: current -> new (held-out)", rows)


def report(
    since: str | None = typer.Option(
        None, "--since", help="From (ISO, UTC if no zone; or 7d, 12h)."
    ),
    until: str | None = typer.Option(None, "--until", help="Until, exclusive (same forms)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Requests, share without the LLM, tokens and cost vs all-LLM, latency, approvals."""
    # Deferred: a second or more of start-up (LangGraph, torch, llama.cpp); other commands skip it.
    from agentflow.checkpoints.ledger import Ledger
    from agentflow.report import build_report

    try:
        start, end = parse_when(since, "--since"), parse_when(until, "--until")
        with Ledger.from_settings(Settings()) as ledger:
            rep = build_report(ledger, start, end)
    except AgentflowError as exc:
        fail(exc)
    data = rep.model_dump(mode="json")
    if json_out:
        emit_json(data)
        return
    latency = {
        f"latency {k}": f"p50 {v['p50_ms']} ms, p95 {v['p95_ms']} ms (n={v['n']})"
        for k, v in data.pop("latency").items()
    }
    emit_table("report", {**data, **latency})
