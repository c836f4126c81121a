"""Whether a retrained head may replace the current one: both scored on the same held-out
rows under the role's escalation policy, the candidate kept only if it is not worse."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel

from agentflow.decision import EscalationPolicy
from agentflow.models.calibration import expected_calibration_error
from agentflow.models.head import EncoderHead

__all__ = ["AcceptancePolicy", "HeadScore", "score_head"]


class HeadScore(BaseModel):
    """How a head does on held-out rows, under the role's escalation policy."""

    n: int
    """Held-out rows scored."""
    accuracy: float
    """Share whose top choice is right."""
    coverage: float
    """Share the head is trusted on (handled without the LLM)."""
    handled_correctly: float
    """Share handled without the LLM *and* right: coverage that counts."""
    confident_errors: float
    """Share handled without the LLM but wrong: the mistakes nobody checks."""
    ece: float
    """Expected calibration error of the top choice."""


@dataclass(frozen=True)
class AcceptancePolicy:
    """When a retrained head replaces the current one."""

    test_size: float = 0.25
    """Share of every label held out for the comparison."""
    seed: int = 0
    """Seed of the held-out split (the split is deterministic)."""
    tolerance: float = 0.0
    """How much worse a metric may be and still count as "not worse"."""

    def accepts(self, old: HeadScore | None, new: HeadScore) -> tuple[bool, str]:
        """Whether ``new`` is not worse than ``old``, and why.

        Compared: accuracy, handled-correctly (coverage that counts only right answers:
        raw coverage would reward a head for being confidently wrong on a class it never
        saw) and confident errors.
        """
        if new.n == 0:
            return False, "no held-out rows to compare on: label more decisions"
        if old is None:
            return True, "no current head to compare with"
        worse = [
            name
            for name, new_v, old_v in (
                ("accuracy", new.accuracy, old.accuracy),
                ("handled_correctly", new.handled_correctly, old.handled_correctly),
                ("confident_errors", -new.confident_errors, -old.confident_errors),
            )
            if new_v < old_v - self.tolerance
        ]
        if worse:
            return False, "worse than the current head on " + ", ".join(worse)
        return True, "not worse on accuracy, handled_correctly and confident_errors"


def score_head(
    head: EncoderHead,
    embeddings: NDArray[np.float32],
    gold: Sequence[str],
    threshold: float,
    texts: Sequence[str],
    extra: NDArray[np.float64] | None = None,
) -> HeadScore:
    """Score ``head`` on rows (their ``texts``, embeddings and, for a head that reads
    them, side-features ``extra``), trusting it exactly as ``EscalationPolicy`` would."""
    if len(gold) == 0:
        return HeadScore(
            n=0, accuracy=0, coverage=0, handled_correctly=0, confident_errors=0, ece=0
        )
    policy = EscalationPolicy(threshold=threshold)
    probs = head.probabilities(embeddings, extra, texts=texts)
    conf = probs.max(axis=1)
    correct = np.array(head.labels)[probs.argmax(axis=1)] == np.array(gold)
    trusted = conf >= policy.threshold
    if policy.require_calibrated and not head.calibrated:
        trusted[:] = False
    return HeadScore(
        n=len(gold),
        accuracy=round(float(correct.mean()), 4),
        coverage=round(float(trusted.mean()), 4),
        handled_correctly=round(float((trusted & correct).mean()), 4),
        confident_errors=round(float((trusted & ~correct).mean()), 4),
        ece=round(expected_calibration_error(conf, correct), 4),
    )
