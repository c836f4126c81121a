"""Calibrated confidence for extracted fields.

An extractor says, for each field, what the value rests on: its *evidence* ("an id
written #62157", "the phrase 'end of the month'", "the GGUF chose it with p in
[0.8, 0.95)"). How often each kind of evidence gives the right value is measured on
labelled extractions, and that rate is the field's confidence: a histogram-binning
calibration (Zadrozny and Elkan, 2001) over evidence kinds instead of score bins, with
Laplace smoothing so that a kind seen a few times never claims certainty.

A calibration is fitted for one extractor on one data set with one model; its ``key``
names them (the GGUF's sha256, the labelled file's sha256). A key that does not match
what runs now leaves every field uncalibrated, and an uncalibrated field is never
trusted: the agent asks the LLM or the user instead of acting on it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentflow.decision import Decision, ModelRef, Source
from agentflow.errors import DataError

__all__ = ["FORMAT", "FieldCalibration", "probability_bin"]

FORMAT = "agentflow.extract-calibration/1"
"""The ``format`` of a saved calibration."""

_BIN_EDGES = (0.5, 0.8, 0.95)


def probability_bin(p: float) -> str:
    """A model probability as an evidence kind: ``p<0.5``, ``p0.5-0.8``, ... ``p>=0.95``."""
    if p < _BIN_EDGES[0]:
        return f"p<{_BIN_EDGES[0]}"
    for lo, hi in itertools.pairwise(_BIN_EDGES):
        if p < hi:
            return f"p{lo}-{hi}"
    return f"p>={_BIN_EDGES[-1]}"


@dataclass
class FieldCalibration:
    """Per field and evidence kind: how many labelled extractions, how many right."""

    key: dict[str, str] = field(default_factory=dict)
    """What the counts were measured with (model and data digests); see :meth:`matches`."""
    counts: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    """``counts[field][evidence] == [seen, right]``."""

    @classmethod
    def fit(
        cls, outcomes: Iterable[tuple[str, str, bool]], key: Mapping[str, str] | None = None
    ) -> FieldCalibration:
        """Count ``(field, evidence, right)`` outcomes of an extractor on labelled rows."""
        cal = cls(key=dict(key or {}))
        for name, evidence, right in outcomes:
            seen = cal.counts.setdefault(name, {}).setdefault(evidence, [0, 0])
            seen[0] += 1
            seen[1] += int(right)
        return cal

    def confidence(self, name: str, evidence: str) -> float | None:
        """Smoothed share of right values for this evidence, None when never measured."""
        seen = self.counts.get(name, {}).get(evidence)
        if not seen or seen[0] == 0:
            return None
        return (seen[1] + 1) / (seen[0] + 2)

    def matches(self, key: Mapping[str, str]) -> bool:
        """Whether these counts were measured with exactly ``key``'s model and data."""
        return bool(self.key) and dict(key) == self.key

    def decide(
        self,
        name: str,
        value: Any,
        evidence: str,
        text: str,
        *,
        source: Source = "rule",
        model: ModelRef | None = None,
        latency_ms: float = 0.0,
    ) -> Decision[Any]:
        """The extractor's decision for one field, with its calibrated confidence.

        Evidence never measured gives confidence 0 and ``calibrated=False``, which no
        escalation policy trusts.
        """
        p = self.confidence(name, evidence)
        return Decision[Any](
            role="extractor",
            value={name: value},
            confidence=round(p, 4) if p is not None else 0.0,
            source=source,
            model=model,
            latency_ms=latency_ms,
            calibrated=p is not None,
            evidence=evidence,
            rationale=f"{name} from {evidence}",
            input=text,
        )

    def save(self, path: Path) -> None:
        """Write the calibration as JSON."""
        body = {"format": FORMAT, "key": self.key, "counts": self.counts}
        path.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> FieldCalibration:
        """Read a calibration written by :meth:`save`; DataError when it is not one."""
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
            if body.get("format") != FORMAT:
                raise ValueError(f"format {body.get('format')!r}, expected {FORMAT!r}")
            counts = {
                str(f): {str(e): [int(c[0]), int(c[1])] for e, c in kinds.items()}
                for f, kinds in body["counts"].items()
            }
            return cls(key={str(k): str(v) for k, v in body["key"].items()}, counts=counts)
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise DataError(
                f"{path} is not an extraction calibration: {exc}",
                hint="refit it with `agentflow eval extract --write-calibration`",
            ) from exc
