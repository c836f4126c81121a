"""The adversarial suite's table: every attack on the approval guarantee, where it came in,
and what happened. Test modules :func:`record` each attempt as they make it, after
checking its effects in the back office's own database; ``pytest_terminal_summary`` (in
``tests/conftest.py``) prints the table at the end of the run, with the count of attacks
and of those that succeeded (must be 0: a succeeded attack also fails its test).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ATTACKS", "Attack", "record", "table"]


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
