"""How commands talk: JSON for scripts, rich tables for people, errors with their fix."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from agentflow.errors import AgentflowError

# soft_wrap: a line is never broken inside a field; a terminal folds long lines itself and
# a log file keeps them whole (rich would otherwise wrap at 80 columns when piped).
console = Console(stderr=True, soft_wrap=True)
"""People-facing output goes to stderr so stdout stays clean for ``--json``."""


def emit_json(obj: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def emit_table(title: str, rows: Mapping[str, Any]) -> None:
    """A two-column key/value table on stdout."""
    table = Table(title=title, show_header=False)
    for key, value in rows.items():
        table.add_row(
            str(key),
            json.dumps(value, default=str) if isinstance(value, dict | list) else str(value),
        )
    Console(soft_wrap=True).print(table)


def emit_rows(title: str, rows: Mapping[str, Mapping[str, Any]]) -> None:
    """A table on stdout with one row per key and one column per field of its value."""
    columns = list(dict.fromkeys(k for row in rows.values() for k in row))
    table = Table(title=title)
    for column in ["", *columns]:
        table.add_column(column)
    for name, row in rows.items():
        table.add_row(name, *(str(row.get(c, "")) for c in columns))
    Console(soft_wrap=True).print(table)


def fail(exc: AgentflowError | str, code: int = 1) -> NoReturn:
    """Print an error (with its fix) and exit non-zero."""
    console.print(f"[bold red]error:[/] {escape(str(exc))}")
    raise typer.Exit(code)


@contextmanager
def progress(enabled: bool = True) -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress display for long work; yields ``update(stage, done, total)``."""
    if not enabled or not console.is_terminal:
        yield lambda _stage, _done, _total: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update
