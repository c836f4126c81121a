"""The rows a head is retrained on: a role's examples merged with the ledger's labels.

Split out of :mod:`agentflow.retrain` (which re-exports the public names). A row is what
the head reads, its text and, for a head with side-features (the loop evaluator), those
features, so that one text seen at different points of a plan stays two rows.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray

from agentflow.examples import Example
from agentflow.inputs import input_extra, input_text
from checkpoints.rows import LabeledInput

__all__ = ["TrainingRow", "TrainingSource", "input_key", "training_rows"]

TrainingSource = Literal["example", "llm", "human"]
"""Where a training row came from, weakest first."""

_PRIORITY: dict[TrainingSource, int] = {"example": 0, "llm": 1, "human": 2}


class TrainingRow(NamedTuple):
    """One input (text, plus side-features for heads that read them) with its label."""

    text: str
    """What the head reads."""
    label: str
    """What it should decide."""
    source: TrainingSource
    """example, llm (a distilled verdict) or human (a reviewer's label)."""
    extra: tuple[float, ...] | None = None
    """Side-features read beside the text (None for a text-only head)."""

    @property
    def key(self) -> str:
        """What identifies the input: its text, with the side-features when it has them."""
        return _key(self.text, self.extra)


def _key(text: str, extra: Sequence[float] | None) -> str:
    if extra is None:
        return text
    return json.dumps({"extra": [float(v) for v in extra], "text": text}, sort_keys=True)


def input_key(value: Any, with_extra: bool) -> str | None:
    """The :attr:`TrainingRow.key` of a recorded ``Decision.input`` (None: not usable)."""
    if not with_extra:
        return input_text(value)
    extra = input_extra(value)
    return None if extra is None else _key(input_text(value), extra)


def training_rows(
    examples: Sequence[Example],
    labelled: Sequence[LabeledInput],
    allowed: Collection[str],
    extra: NDArray[np.float64] | None = None,
) -> tuple[list[TrainingRow], int]:
    """Merge examples and ledger labels, one row per input; returns the rows and how many
    labels were dropped.

    ``extra`` holds the examples' side-features, one row each, for a head that reads
    them; a label is then dropped when its decision did not record features of that
    size (a ledger row from before they were recorded). A label is also dropped for
    naming a value the role cannot take.
    """
    rows: dict[str, TrainingRow] = {}
    dropped = 0
    width = None if extra is None else int(np.asarray(extra).shape[1])

    def put(row: TrainingRow) -> None:
        held = rows.get(row.key)
        if held is None or _PRIORITY[row.source] >= _PRIORITY[held.source]:
            rows[row.key] = row

    for i, ex in enumerate(examples):
        side = None if extra is None else tuple(float(v) for v in extra[i])
        put(TrainingRow(ex.text, ex.label, "example", side))
    for item in labelled:
        if not isinstance(item.value, str) or item.value not in allowed or item.input is None:
            dropped += 1
            continue
        side_in = input_extra(item.input) if width is not None else None
        if width is not None and (side_in is None or len(side_in) != width):
            dropped += 1
            continue
        put(
            TrainingRow(
                input_text(item.input),
                item.value,
                item.source,
                None if side_in is None else tuple(side_in),
            )
        )
    return list(rows.values()), dropped
