"""Consequence classes, MCP-style tool annotations, and the floor rule.

Declared annotations are a floor: a model may raise a call's class (a bulk send, a huge
amount), never lower it. :func:`apply_floor` is the only place that combines the two, so
the invariant is enforced in one line of code and tested as an invariant.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CONSEQUENCE_CLASSES",
    "ConsequenceClass",
    "ToolAnnotations",
    "apply_floor",
    "floor_from_annotations",
    "severity",
]

ConsequenceClass = Literal["safe", "retry_safe", "retry_unsafe", "irreversible", "unknown"]
"""What running a tool call can do, from harmless to needing a human."""

CONSEQUENCE_CLASSES: tuple[ConsequenceClass, ...] = get_args(ConsequenceClass)

# `unknown` is treated as the most severe: it can only be settled by the LLM or a human,
# and a floor of `unknown` (nothing declared) must never let a model's guess go below
# what the modeler itself can justify. See apply_floor for how unknown is handled.
_SEVERITY: dict[ConsequenceClass, int] = {
    "safe": 0,
    "retry_safe": 1,
    "retry_unsafe": 2,
    "irreversible": 3,
    "unknown": 4,
}


def severity(cls: ConsequenceClass) -> int:
    """Rank of a class: higher needs more protection."""
    return _SEVERITY[cls]


class ToolAnnotations(BaseModel):
    """MCP tool annotations plus agentflow's ``irreversible`` (all optional hints)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    read_only: bool | None = Field(default=None, alias="readOnlyHint")
    """The tool does not modify its environment."""
    destructive: bool | None = Field(default=None, alias="destructiveHint")
    """The tool may perform destructive updates (only meaningful when not read-only)."""
    idempotent: bool | None = Field(default=None, alias="idempotentHint")
    """Calling it again with the same arguments has no additional effect."""
    open_world: bool | None = Field(default=None, alias="openWorldHint")
    """The tool talks to an open world of external entities (web, email, payments)."""
    irreversible: bool | None = None
    """The effect cannot be undone (payment, send, delete)."""

    def declared(self) -> bool:
        """True when at least one hint was given."""
        return any(
            v is not None
            for v in (self.read_only, self.destructive, self.idempotent, self.irreversible)
        )


def floor_from_annotations(annotations: ToolAnnotations | None) -> ConsequenceClass | None:
    """The lowest class a call to a tool with these annotations may be given.

    None means nothing was declared: the modeler alone judges the call.
    """
    if annotations is None or not annotations.declared():
        return None
    if annotations.irreversible or annotations.destructive:
        return "irreversible"
    if annotations.read_only:
        return "safe"
    if annotations.idempotent:
        return "retry_safe"
    return "retry_unsafe"


def apply_floor(floor: ConsequenceClass | None, proposed: ConsequenceClass) -> ConsequenceClass:
    """Combine a declared floor with a model's proposal: raise, never lower.

    ``unknown`` from a model is never combined away silently: with a floor below
    ``irreversible`` it stays ``unknown`` (escalate / human), with a floor of
    ``irreversible`` the call needs approval either way, so ``irreversible`` stands.
    """
    if floor is None:
        return proposed
    if proposed == "unknown":
        return "irreversible" if floor == "irreversible" else "unknown"
    return proposed if severity(proposed) > severity(floor) else floor
