"""`agentflow eval extract`: per-field accuracy and calibration of a graph's extractors.

A labelled row is ``{"flow": ..., "text": ..., "expected": {field: value | null}}``
(null: the message does not say, so the field must come from a default). Each row goes
through the flow's extractor; a field is right when the value the message gave matches
(a field taken from a default counts as "not said"). Confidences are cross-fitted: the
calibration scoring a row is fitted on the other folds only, so the reported ECE is what
a new message would see, not the fit's own error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agentflow.decision import Decision
from agentflow.errors import DataError
from agentflow.extraction import FieldCalibration
from agentflow.models.calibration import expected_calibration_error

__all__ = ["Outcome", "evaluate_extraction", "extraction_outcomes", "load_labelled"]

Extract = Callable[[str, dict[str, Any]], tuple[dict[str, Any], list[Decision[Any]]]]
Outcome = tuple[int, str, str, bool]
"""(row index, field, evidence, right)."""


def load_labelled(path: Path, flows: Sequence[str]) -> list[dict[str, Any]]:
    """The labelled rows of ``path`` for ``flows`` (other rows, e.g. multi-request, skipped)."""
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if row["flow"] in flows:
                rows.append(
                    {
                        "flow": row["flow"],
                        "text": str(row["text"]),
                        "expected": dict(row["expected"]),
                    }
                )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"{path}:{n} is not a labelled extraction ({exc})",
                hint='each line: {"flow": ..., "text": ..., "expected": {field: value}}',
            ) from exc
    return rows


def _said(decision: Decision[Any]) -> Any:
    """What the message itself gave for the field (None when a default filled it)."""
    if (decision.evidence or "").startswith("default:"):
        return None
    return next(iter(decision.value.values()))


def extraction_outcomes(
    rows: Sequence[Mapping[str, Any]],
    extractors: Mapping[str, Extract],
    customer: dict[str, Any] | None = None,
) -> list[Outcome]:
    """Run every row through its flow's extractor: one outcome per labelled field."""
    outcomes: list[Outcome] = []
    for i, row in enumerate(rows):
        _fields, decisions = extractors[row["flow"]](row["text"], dict(customer or {}))
        by_field = {
            next(iter(d.value)): d
            for d in decisions
            if d.evidence is not None and isinstance(d.value, dict) and len(d.value) == 1
        }
        for name, expected in row["expected"].items():
            decision = by_field.get(name)
            if decision is None:
                continue  # a labelled field this extractor takes from elsewhere (the account)
            outcomes.append((i, name, decision.evidence or "", _said(decision) == expected))
    return outcomes


def evaluate_extraction(
    outcomes: Sequence[Outcome], *, folds: int = 5, threshold: float = 0.8, seed: int = 0
) -> dict[str, Any]:
    """Per field: accuracy, cross-fitted ECE, coverage at ``threshold`` (fields acted on
    without asking) and accuracy on those, from :func:`extraction_outcomes`."""
    if not outcomes:
        raise DataError("no labelled extractions to evaluate")
    rows = sorted({o[0] for o in outcomes})
    fold_of = dict(
        zip(rows, np.random.default_rng(seed).permutation(len(rows)) % folds, strict=True)
    )
    conf = np.zeros(len(outcomes))
    for k in range(folds):
        cal = FieldCalibration.fit((f, e, r) for i, f, e, r in outcomes if fold_of[i] != k)
        for j, (i, f, e, _r) in enumerate(outcomes):
            if fold_of[i] == k:
                conf[j] = cal.confidence(f, e) or 0.0
    right = np.array([o[3] for o in outcomes])
    names = np.array([o[1] for o in outcomes])
    report: dict[str, Any] = {"rows": len(rows), "folds": folds, "threshold": threshold}
    fields: dict[str, Any] = {}
    for name in sorted(set(names)):
        mask = names == name
        acted = mask & (conf >= threshold)
        fields[name] = {
            "n": int(mask.sum()),
            "accuracy": round(float(right[mask].mean()), 4),
            "ece": round(expected_calibration_error(conf[mask], right[mask]), 4),
            "coverage": round(float(acted.sum() / mask.sum()), 4),
            "accuracy_on_covered": round(float(right[acted].mean()), 4) if acted.any() else None,
            "evidence": _evidence(outcomes, name),
        }
    report["fields"] = fields
    report["ece"] = round(expected_calibration_error(conf, right), 4)
    return report


def _evidence(outcomes: Sequence[Outcome], name: str) -> dict[str, str]:
    counts: dict[str, list[int]] = {}
    for _i, f, e, r in outcomes:
        if f == name:
            seen = counts.setdefault(e, [0, 0])
            seen[0], seen[1] = seen[0] + 1, seen[1] + int(r)
    return {e: f"{c[1]}/{c[0]} right" for e, c in sorted(counts.items())}
