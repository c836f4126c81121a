"""The adversarial suite's table: every attack on the approval guarantee, where it came in,
and what happened. Test modules :func:`record` each attempt as they make it, after
checking its effects in the back office's own database; ``pytest_terminal_summary`` (in
``tests/conftest.py``) prints the table at the end of the run, with the count of attacks
and of those that succeeded (must be 0: a succeeded attack also fails its test).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ATTACKS",
    "INJECTIONS",
    "Attack",
    "Injection",
    "injection",
    "injection_table",
    "record",
    "table",
]


@dataclass(frozen=True)
class Attack:
    """One attempt."""

    attack: str
    """What was tried."""
    entry: str
    """The way in: runtime, custom graph, HTTP API, page, agentflow serve, LangGraph Server."""
    result: str
    """``refused`` (and how), or what it achieved."""

    @property
    def succeeded(self) -> bool:
        """True when the attack changed something it must not have."""
        return not self.result.startswith("refused")


ATTACKS: list[Attack] = []
"""Every attempt of this run, in order."""

SUMMARIES: list[str] = []
"""One-line results other invariant suites want in the run's output (the crash test's counts)."""


def summary(line: str) -> None:
    """Print ``line`` in the run's closing summary, even when its test passes quietly."""
    SUMMARIES.append(line)


def record(attack: str, entry: str, refused: bool, how: str = "") -> None:
    """Add one attempt; ``refused`` is what the test checked, ``how`` the answer seen."""
    result = ("refused" + (f" ({how})" if how else "")) if refused else f"SUCCEEDED {how}"
    ATTACKS.append(Attack(attack, entry, result))


def table() -> list[str]:
    """The table's lines (empty when no attack ran)."""
    if not ATTACKS:
        return []
    wa = max(len(a.attack) for a in ATTACKS)
    we = max(len(a.entry) for a in ATTACKS)
    lines = [f"{'attack':<{wa}}  {'entry point':<{we}}  result"]
    lines += [f"{a.attack:<{wa}}  {a.entry:<{we}}  {a.result}" for a in ATTACKS]
    entries = len({a.entry for a in ATTACKS})
    won = sum(a.succeeded for a in ATTACKS)
    lines.append(f"{len(ATTACKS)} attacks through {entries} entry points, {won} succeeded")
    return lines


@dataclass(frozen=True)
class Injection:
    """One prompt-injection attempt on a small model's decision, with real local models."""

    attempt: str
    """What was tried."""
    target: str
    """The decision it went for: route, consequence, approval, loop."""
    changed: bool
    """Whether the decision came out other than on the clean input."""
    effect: bool
    """Whether anything ran that should not have (checked in the back office)."""
    seen: str
    """What the decision was, clean -> attacked."""


INJECTIONS: list[Injection] = []
"""Every injection attempt of this run, in order."""


def injection(attempt: str, target: str, *, changed: bool, effect: bool, seen: str) -> None:
    """Add one injection attempt's outcome."""
    INJECTIONS.append(Injection(attempt, target, changed, effect, seen))


def injection_table() -> list[str]:
    """The injection suite's lines: each attempt, then the share that changed a decision
    and the share that caused an effect (must be 0)."""
    if not INJECTIONS:
        return []
    wa = max(len(i.attempt) for i in INJECTIONS)
    lines = [f"{'attempt':<{wa}}  {'target':<11}  {'decision':<8}  effect  seen"]
    for i in INJECTIONS:
        decision = "CHANGED" if i.changed else "held"
        effect = "YES" if i.effect else "none"
        lines.append(f"{i.attempt:<{wa}}  {i.target:<11}  {decision:<8}  {effect:<6}  {i.seen}")
    n = len(INJECTIONS)
    changed = sum(i.changed for i in INJECTIONS)
    effects = sum(i.effect for i in INJECTIONS)
    lines.append(
        f"{n} injection attempts: {changed} changed a decision ({changed / n:.0%}), "
        f"{effects} caused an effect ({effects / n:.0%})"
    )
    return lines
