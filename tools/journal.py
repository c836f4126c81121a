"""The effects journal: the durable memory of what guarded calls did.

The idempotency store is fast and shared, but its records expire (the retention window)
and a Redis can lose writes. Checkpoints that can resume a call never expire. So every
call that is not ``safe`` also leaves its outcome, by idempotency key, in a journal kept
in the SQL ledger (:class:`agentflow.checkpoints.ledger.Ledger` implements :class:`EffectJournal`):

- ``started`` once the lease is held and *before* the tool runs, so a process killed
  inside the tool (after its effect) leaves a trace the store's expiry cannot erase;
- ``completed`` with its result, written *before* the store is told, so a process killed
  between the two still leaves the fact;
- ``failed`` (kept failed: not to be run again), ``outcome_unknown`` (a lease that ended
  without a result: a human decides), ``released`` (a retryable failure: may run again).

The executor reads the journal before it takes a lease or consumes a grant: a key the
journal knows replays its stored result, stays failed, or stays unknown, however long
ago it ran; a ``started`` key is asked of the store (a live lease is in flight, anything
else is an unknown outcome). Retention in Redis becomes a cache window, never the memory
of what happened. A ``retry_safe`` call whose tool forwards its key may reclaim a key the
journal says was started (the store arbitrates, as it always does for those). A human
resolves an unknown outcome with :meth:`agentflow.tools.executor.GuardedExecutor.settle` (or allows
a re-run with ``forget``), which changes the store and the journal together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = ["EffectEntry", "EffectJournal", "EffectOutcome"]

EffectOutcome = Literal["started", "completed", "failed", "outcome_unknown", "released"]
"""What a journal row says: ``started`` (a holder began the call; written before the tool
runs), ``completed``, ``failed`` (kept: never run again), ``outcome_unknown``, or
``released`` (a retryable failure gave the key back: it may run again)."""


@dataclass(frozen=True)
class EffectEntry:
    """One key's outcome as the journal keeps it."""

    outcome: EffectOutcome
    """What happened."""
    fingerprint: str
    """Digest of the call (tool and canonical arguments) the key ran."""
    result: Any = None
    """The stored result (``completed``)."""
    error: str | None = None
    """Why it failed, or why its outcome is unknown."""
    thread_id: str = ""
    """Thread of the call."""
    tool: str = ""
    """Tool name."""


@runtime_checkable
class EffectJournal(Protocol):
    """Where the executor keeps outcomes durably (the ledger)."""

    def effect(
        self,
        key: str,
        *,
        thread_id: str,
        tool: str,
        fingerprint: str,
        outcome: EffectOutcome,
        result: Any = None,
        error: str | None = None,
    ) -> None:
        """Record (or update) the outcome of ``key``."""
        ...

    def effect_of(self, key: str) -> EffectEntry | None:
        """The recorded outcome of ``key``, if any."""
        ...

    def forget_effect(self, key: str) -> bool:
        """Delete ``key``'s row (a human allows a re-run); True when there was one."""
        ...
