"""The recorded runs `agentflow bench loop` replays: one JSON object per line.

``{"goal": str, "steps": [{"tool": str, "definition": {...}?, "args": {...},
"observation": any}], "final": "done" | "escalate"}``, plus optional ``id`` and
``domain``. :func:`observation_failed` says which recorded observations are failed steps.
"""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agentflow.errors import DataError

__all__ = [
    "RecordedStep",
    "ToolDefinition",
    "Trajectory",
    "load_trajectories",
    "observation_failed",
]

_STATUS_LINE = re.compile(r"\s*(?:HTTP/\d(?:\.\d)?\s+)?[45]\d\d\b")


class ToolDefinition(BaseModel):
    """An MCP-style tool definition, as the consequence modeler reads it."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1)
    """Tool name; must be the step's ``tool``."""
    description: str = ""
    """What the tool does."""
    inputSchema: dict[str, Any] = Field(default_factory=dict)
    """JSON Schema of the arguments (MCP's camelCase name)."""


class RecordedStep(BaseModel):
    """One executed tool call and what came back."""

    model_config = ConfigDict(extra="forbid")

    tool: str = Field(min_length=1)
    """Tool called."""
    definition: ToolDefinition | None = None
    """Its definition; without one the step's consequence is not assessed."""
    args: dict[str, Any] = Field(default_factory=dict)
    """Arguments of the call."""
    observation: Any = None
    """The tool's answer or error, as recorded (JSON or text)."""

    @model_validator(mode="after")
    def _same_tool(self) -> RecordedStep:
        if self.definition is not None and self.definition.name != self.tool:
            raise ValueError(f"definition.name {self.definition.name!r} is not {self.tool!r}")
        return self


class Trajectory(BaseModel):
    """One recorded run: the goal, its steps in order, and how it ended."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    """Name used in the report (default: the line number)."""
    domain: str | None = None
    """Free-form grouping."""
    goal: str = Field(min_length=1)
    """What the run was for."""
    steps: list[RecordedStep] = Field(min_length=1)
    """Executed steps, oldest first."""
    final: Literal["done", "escalate"]
    """Whether the run met its goal or needed a human."""


def load_trajectories(path: Path | None = None) -> list[Trajectory]:
    """Validated runs of a JSONL file (default: the shipped ones)."""
    name = str(path) if path else "the shipped loop_trajectories.jsonl"
    source = files("agentflow.benchmarks").joinpath("data", "loop_trajectories.jsonl")
    try:
        text = (path or source).read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read {name}: {exc}", hint="pass an existing file") from exc
    hint = 'one JSON object per line: {"goal", "steps": [{"tool", "args", "observation"}], "final"}'
    runs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            run = Trajectory.model_validate_json(line)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            where = f"{loc}: " if loc else ""
            raise DataError(f"{name} line {number}: {where}{first['msg']}", hint=hint) from exc
        runs.append(run if run.id else run.model_copy(update={"id": f"line {number}"}))
    if not runs:
        raise DataError(f"{name} holds no trajectories", hint=hint)
    return runs


def observation_failed(observation: Any) -> bool:
    """Whether a recorded observation is a failed step.

    Failed: text opening with a 4xx/5xx status (``404 Not Found: ...``, ``HTTP/1.1 503``),
    or a JSON object with a non-empty ``error`` or a 4xx/5xx integer ``status`` /
    ``status_code`` (problem+json). Everything else worked, empty results and partial
    successes (``{"updated": 10, "failed": 2}``) included: a tool that answers has run,
    and reading what it said is the loop evaluator's job. A live executor marks a step
    failed only when the tool raises; recordings do not say whether it did, so these
    shapes stand in for it.
    """
    if isinstance(observation, str):
        return _STATUS_LINE.match(observation) is not None
    if not isinstance(observation, dict):
        return False
    status = observation.get("status_code", observation.get("status"))
    if isinstance(status, int) and not isinstance(status, bool) and 400 <= status <= 599:
        return True
    return bool(observation.get("error"))
