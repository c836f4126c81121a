"""The ``agentflow`` command line. Each command group lives in its own module."""

from __future__ import annotations

import typer

from agentflow.cli import agent, bench, data, demo, eval_, models, review_cmd, serve

app = typer.Typer(
    name="agentflow",
    help="SLM-first agentic workflows on LangGraph.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(models.app, name="models")
app.add_typer(data.app, name="data")
app.add_typer(eval_.app, name="eval")
app.add_typer(bench.app, name="bench")
app.command(name="demo")(demo.demo)
app.command(name="run")(agent.run)
app.command(name="approvals")(agent.approvals)
app.command(name="resume")(agent.resume)
app.command(name="setup")(agent.setup)
app.command(name="assess")(agent.assess)
app.command(name="serve")(serve.serve)
app.command(name="review")(review_cmd.review)
app.command(name="train")(review_cmd.train)
app.command(name="report")(review_cmd.report)


def main() -> None:
    """Console-script entry point."""
    app()
